"""The mlx-dpo terminal app: `python -m mlx_dpo tui`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterable, Optional

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from mlx_dpo.config import TrainConfig
from mlx_dpo.memory import available_bytes as machine_bytes

from .model_host import ModelHost
from .presets import PRESETS
from .recent import load_recent, remember, state_dir
from .screens.main import TABS, MainScreen


class MlxDpoApp(App):
    TITLE = "mlx-dpo"
    SUB_TITLE = "preference tuning on MLX"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)] + [
        Binding(f"f{i}", f"show_tab('{tab}')", title.split()[0]) for i, (tab, title) in enumerate(TABS, 1)]

    def __init__(self, config: Optional[TrainConfig] = None, root: Optional[Path] = None,
                 home: Optional[Path] = None, available_bytes: Optional[float] = -1.0) -> None:
        """`available_bytes`: memory the estimate is compared with (-1: ask this machine; None: do not compare)."""
        super().__init__()
        self.initial = config or TrainConfig()
        self.root = root or Path.cwd()
        self.home = home or state_dir()
        self.available = machine_bytes() if available_bytes == -1.0 else available_bytes
        self.train_config: Optional[TrainConfig] = None
        self.model_host = ModelHost()
        self.quit_when_stopped = False

    def on_mount(self) -> None:
        # Pushed rather than returned from get_default_screen: Textual loads a screen's CSS_PATH only on push.
        self.push_screen(MainScreen(self.initial, self.root, load_recent(self.home), self.available))

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    def action_show_tab(self, tab: str) -> None:
        self.main.show_tab(tab)

    def draft_config(self, **overrides) -> Optional[TrainConfig]:
        from .widgets.config_pane import ConfigPane

        return self.main.query_one(ConfigPane).draft(**overrides)

    def train_pane(self):
        from .widgets.train_pane import TrainPane

        return self.main.query_one(TrainPane)

    def remember_model(self, model: str) -> None:
        remember(self.home, model)

    def start_training(self, resume: bool = False) -> None:
        self.action_show_tab("train")
        self.train_pane().start(resume=resume)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from .widgets.config_pane import ConfigPane
        from .widgets.data_pane import DataPane

        yield from super().get_system_commands(screen)
        for tab, title in TABS:
            yield SystemCommand(f"Go to {title}", f"Show the {title} tab", partial(self.action_show_tab, tab))
        yield SystemCommand("Start training", "Run `train` with the current settings", self.start_training)
        yield SystemCommand("Resume training", "Continue the run in the adapter folder",
                            partial(self.start_training, True))
        yield SystemCommand("Stop training", "Checkpoint and stop the running training", lambda: self.train_pane().stop())
        yield SystemCommand("Check data again", "Re-run the data checks", lambda: self.main.query_one(DataPane).recheck())
        yield SystemCommand("Save config as YAML", "Write the settings to a --config file",
                            lambda: self.main.query_one(ConfigPane).ask_save())
        yield SystemCommand("Load config from YAML", "Read settings from a --config file",
                            lambda: self.main.query_one(ConfigPane).ask_load())
        for name, preset in PRESETS.items():
            yield SystemCommand(f"Preset: {name} Mac", preset["model"],
                                partial(lambda p: self.main.query_one(ConfigPane).set_values(p), preset))

    # --- quitting while a run is going --------------------------------------------

    async def action_quit(self) -> None:
        if not self.train_pane().running:
            self.exit()
            return
        from .screens.choice_dialog import ChoiceDialog

        def answer(choice: Optional[str]) -> None:
            if choice == "stop":
                self.quit_when_stopped = True
                self.train_pane().stop()

        self.push_screen(ChoiceDialog("A training run is going. Stop it (a checkpoint is saved) and quit?",
                                      [("stop", "Stop and quit")]), answer)

    def training_ended(self) -> None:
        if self.quit_when_stopped:
            self.exit()

    def on_unmount(self) -> None:
        self.model_host.shutdown()
