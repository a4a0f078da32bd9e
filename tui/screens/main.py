"""The main screen: one tab per job, and the routing of messages between them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from mlx_dpo.config import TrainConfig

from ..messages import ConfigChanged, DataChosen, RunRequested, TrainExited
from ..widgets.chat_pane import ChatPane
from ..widgets.config_pane import ConfigPane
from ..widgets.data_pane import DataPane
from ..widgets.label_pane import LabelPane
from ..widgets.model_picker import ModelPicker
from ..widgets.runs_pane import RunsPane
from ..widgets.train_pane import TrainPane

LAUNCH_ONLY = ("progress", "resume", "resume_from", "overwrite", "force")

# Where the cursor goes when a tab is opened.
FOCUS = {"data": "#data-tree", "config": "#cfg-model", "train": "#train-start", "chat": "#chat-input",
         "label": "#label-typed", "runs": "#runs-table"}
TABS = (("data", "Data"), ("config", "Model & config"), ("train", "Train"), ("chat", "Chat"), ("label", "Label"),
        ("runs", "Runs"))


class MainScreen(Screen):
    CSS_PATH = "main.tcss"
    AUTO_FOCUS = "DataTree"

    def __init__(self, config: TrainConfig, root: Path, recent: list[str], available_bytes) -> None:
        super().__init__()
        self.initial, self.root, self.recent, self.available_bytes = config, root, recent, available_bytes

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="data", id="tabs"):
            with TabPane("Data", id="data"):
                yield DataPane(self.root)
            with TabPane("Model & config", id="config"):
                yield ConfigPane(self.initial, self.recent, self.available_bytes)
            with TabPane("Train", id="train"):
                yield TrainPane()
            with TabPane("Chat", id="chat"):
                yield ChatPane()
            with TabPane("Label", id="label"):
                yield LabelPane()
            with TabPane("Runs", id="runs"):
                yield RunsPane(self.root)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for picker in self.query(ModelPicker):
            picker.suggest(self.initial.model or None)

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        # Focus follows: a focused widget left behind in a hidden pane would switch the tabs back.
        target = self.query_one(FOCUS[tab])
        if not target.focusable:  # e.g. a disabled Start button while a run is going
            target = next((w for w in self.query_one(f"TabPane#{tab}").query("*") if w.focusable), None)
        if target is not None:
            target.focus()

    # --- routing ---------------------------------------------------------------

    def on_data_chosen(self, message: DataChosen) -> None:
        self.query_one(ConfigPane).set_values({"data": message.source})

    def on_config_changed(self, message: ConfigChanged) -> None:
        self.app.train_config = message.config
        form = self.query_one(ConfigPane).form_values()
        adapter = form.get("adapter_path")
        trained = adapter if adapter and (Path(adapter) / "adapters.safetensors").is_file() else None
        for picker in self.query(ModelPicker):
            picker.suggest(form.get("model"), trained)

    def on_train_exited(self, message: TrainExited) -> None:
        folder = Path(message.adapter_path)
        if (folder / "adapters.safetensors").is_file():
            for picker in self.query(ModelPicker):
                picker.suggest(adapter=str(folder))
        self.query_one(RunsPane).refresh_runs()
        self.app.training_ended()

    def on_run_requested(self, message: RunRequested) -> None:
        # The run's own settings (its length included), minus how the last process was launched.
        names = {f.name for f in dataclasses.fields(TrainConfig)} - set(LAUNCH_ONLY)
        values = {k: v for k, v in message.config.items() if k in names}
        values["adapter_path"] = str(message.folder)
        pane = self.query_one(ConfigPane)
        pane.set_values(values)
        if pane.config is not None:  # started first, so the tab opens with Stop (not a disabled Start) focused
            self.query_one(TrainPane).start(resume=True, cfg=pane.config)
        self.show_tab("train")

    def on_runs_pane_chat_requested(self, message: RunsPane.ChatRequested) -> None:
        picker = self.query_one("#chat-picker", ModelPicker)
        picker.suggest(message.model, message.adapter)
        self.show_tab("chat")
        picker.load()
