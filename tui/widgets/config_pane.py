"""The Model & config tab: a validated form over TrainConfig, presets, memory estimate, YAML, CLI command."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from mlx_dpo import config as C
from mlx_dpo.checkpoint import atomic_write_text
from mlx_dpo.errors import UserError
from mlx_dpo.known_models import model_config
from mlx_dpo.memory import GB, estimate_for_settings

from ..messages import ConfigChanged
from ..presets import PRESETS

# The settings most runs touch; everything else comes from a loaded YAML (and is kept).
FIELDS = ("model", "quantize", "data", "adapter_path", "loss_type", "beta", "learning_rate", "epochs", "iters",
          "batch_size", "grad_accumulation_steps", "max_length", "max_prompt_length", "lora_rank", "lora_alpha",
          "num_layers", "grad_checkpoint")
LABELS = {"quantize": "quantize (bits)", "grad_accumulation_steps": "grad accumulation", "adapter_path": "adapter folder",
          "grad_checkpoint": "grad checkpointing"}
PLACEHOLDERS = {"model": "MLX model folder or hub id (or pick a preset)", "data": "pick in the Data tab, or a path / hub id"}
TYPES = C.field_types(C.TrainConfig)
META = {f.name: f for f in dataclasses.fields(C.TrainConfig)}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def train_command(cfg: C.TrainConfig) -> str:
    return shlex.join(["python", "-m", "mlx_dpo", "train", *C.to_flags(cfg)])


class ConfigPane(VerticalScroll):
    def __init__(self, initial: C.TrainConfig, recent: list[str], available_bytes: Optional[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: dict[str, Any] = dataclasses.asdict(initial)
        self.recent = recent
        self.available_bytes = available_bytes
        self.config: Optional[C.TrainConfig] = initial
        self.loading = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="cfg-presets"):
            yield Label("Presets:")
            for name in PRESETS:
                yield Button(name, id=f"preset-{name.split()[0]}", classes="preset", compact=True)
            yield Button("Load YAML", id="cfg-load", compact=True)
            yield Button("Save YAML", id="cfg-save", compact=True)
        with Grid(id="cfg-form"):
            for name in FIELDS:
                yield Label(LABELS.get(name, name.replace("_", " ")), classes="cfg-label")
                yield self._editor(name)
        yield Static("", id="cfg-error")
        yield Static("", id="cfg-memory")
        with Vertical(id="cfg-command-box"):
            with Horizontal(id="cfg-command-bar"):
                yield Label("Equivalent command")
                yield Button("Copy", id="cfg-copy", compact=True)
            yield Static("", id="cfg-command")

    def _editor(self, name: str):
        value, meta = self.values[name], META[name]
        wid = f"cfg-{name}"
        tooltip = meta.metadata.get("help", "")
        if C._base_type(TYPES[name]) is bool:
            widget = Checkbox("", bool(value), id=wid, compact=True)
        elif meta.metadata.get("choices"):
            options = [(str(c), c) for c in meta.metadata["choices"]]
            allow_blank = C._is_optional(TYPES[name])
            widget = Select(options, value=value if value is not None else Select.NULL, allow_blank=allow_blank,
                            prompt="none", id=wid, compact=True)
        else:
            suggester = SuggestFromList(self.recent + [p["model"] for p in PRESETS.values()]) if name == "model" else None
            widget = Input(_text(value), id=wid, suggester=suggester,
                           placeholder="none" if C._is_optional(TYPES[name]) else PLACEHOLDERS.get(name, ""),
                           compact=True)
        widget.tooltip = tooltip
        return widget

    def on_mount(self) -> None:
        self.revalidate()

    # --- reading and writing the form ---------------------------------------

    def form_values(self) -> dict[str, Any]:
        out = {}
        for name in FIELDS:
            widget = self.query_one(f"#cfg-{name}")
            if isinstance(widget, Checkbox):
                out[name] = widget.value
            elif isinstance(widget, Select):
                out[name] = None if widget.value is Select.NULL else widget.value
            else:
                out[name] = widget.value.strip() or None
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the form (a preset, a loaded YAML, a past run); fields not on the form are kept too."""
        self.values.update({k: v for k, v in values.items() if k in META})
        self.loading = True
        for name in FIELDS:
            widget = self.query_one(f"#cfg-{name}")
            value = self.values[name]
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                widget.value = value if value is not None else Select.NULL
            else:
                widget.value = _text(value)
        self.loading = False
        self.revalidate()

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def changed(self, event) -> None:
        if getattr(event, "control", None) is not None and str(event.control.id or "").startswith("cfg-") \
                and not self.loading:
            self.revalidate()

    def draft(self, **overrides: Any) -> Optional[C.TrainConfig]:
        """The form's settings with `overrides`, or None if they do not make a config (for the Data tab's check)."""
        flags = {k: v for k, v in {**self.form_values(), **overrides}.items() if v is not None}
        try:
            return C.build(C.TrainConfig, flags, base={k: v for k, v in self.values.items() if k not in FIELDS})
        except UserError:
            return None

    def revalidate(self) -> None:
        form = self.form_values()
        bad: dict[str, str] = {}
        for name, value in form.items():
            widget = self.query_one(f"#cfg-{name}")
            try:
                if value is not None:
                    C.coerce(name, value, TYPES[name])
                widget.remove_class("-invalid-field")
            except ValueError as e:
                bad[name] = str(e)
                widget.add_class("-invalid-field")
        error = ""
        cfg = None
        if bad:
            name, why = next(iter(bad.items()))
            error = f"{name.replace('_', ' ')} {why}"
        else:
            base = {k: v for k, v in self.values.items() if k not in FIELDS}
            flags = {k: v for k, v in form.items()}
            flags.update({k: "none" for k, v in form.items() if v is None and C._is_optional(TYPES[k])})
            try:
                cfg = C.build(C.TrainConfig, flags, base=base)
            except UserError as e:
                error = str(e).removeprefix("--")
                field = error.split(" ", 1)[0].replace("-", "_")
                if field in FIELDS:
                    self.query_one(f"#cfg-{field}").add_class("-invalid-field")
        if cfg is not None and not cfg.model:
            error = "model: a local MLX model folder or a hub id (e.g. a preset)"
        elif cfg is not None and not cfg.data:
            error = "data: pick a file in the Data tab or type a path / hub id"
        self.config = cfg if not error else None
        self.query_one("#cfg-error", Static).update(f"[b red]{error}[/]" if error else "[green]Settings are valid.[/]")
        self.show_estimate(cfg)
        self.query_one("#cfg-command", Static).update(train_command(cfg) if cfg else "")
        self.post_message(ConfigChanged(self.config, error))

    def show_estimate(self, cfg: Optional[C.TrainConfig]) -> None:
        box = self.query_one("#cfg-memory", Static)
        if cfg is None:
            box.update("")
            return
        mc = model_config(cfg.model)
        if mc is None:
            box.update("Peak memory: unknown until the model is downloaded (its config.json gives the shape).")
            return
        try:
            est = estimate_for_settings(mc, cfg)
        except (KeyError, TypeError, ZeroDivisionError):
            box.update("Peak memory: this model's config.json lacks the sizes the estimate needs.")
            return
        line = f"Estimated peak memory: [b]{est / GB:.1f} GB[/]"
        if self.available_bytes:
            fits = est <= self.available_bytes
            line += (f" of {self.available_bytes / GB:.1f} GB available: "
                     + ("[green]fits[/]" if fits else "[b red]too big: lower batch size, turn on grad checkpointing "
                                                      "or shorten max length[/]"))
        box.update(line)

    # --- buttons --------------------------------------------------------------

    @on(Button.Pressed, ".preset")
    def preset(self, event: Button.Pressed) -> None:
        name = next(n for n in PRESETS if event.button.id == f"preset-{n.split()[0]}")
        self.set_values(PRESETS[name])
        self.notify(f"{name} preset: {PRESETS[name]['model']}")

    @on(Button.Pressed, "#cfg-copy")
    def copy_command(self) -> None:
        if self.config is not None:
            self.app.copy_to_clipboard(train_command(self.config))
            self.notify("Command copied to the clipboard.")

    @on(Button.Pressed, "#cfg-save")
    def ask_save(self) -> None:
        from ..screens.path_dialog import PathDialog

        if self.config is None:
            self.notify("Fix the settings first.", severity="error")
            return
        self.app.push_screen(PathDialog("Save the config as YAML to:", "run.yaml", "Save"), self.save_yaml)

    def save_yaml(self, path: Optional[str]) -> None:
        if not path or self.config is None:
            return
        try:
            atomic_write_text(Path(path).expanduser(), C.to_yaml(self.config))
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}", severity="error")
            return
        self.notify(f"Saved {path}; run it with: python -m mlx_dpo train --config {path}")

    @on(Button.Pressed, "#cfg-load")
    def ask_load(self) -> None:
        from ..screens.path_dialog import PathDialog

        self.app.push_screen(PathDialog("Load a YAML config from:", "run.yaml", "Load"), self.load_yaml)

    def load_yaml(self, path: Optional[str]) -> None:
        if not path:
            return
        try:
            cfg = C.build(C.TrainConfig, None, str(Path(path).expanduser()))
        except UserError as e:
            self.notify(str(e), severity="error", timeout=10)
            return
        self.values = dataclasses.asdict(C.TrainConfig())
        self.set_values(dataclasses.asdict(cfg))
        self.notify(f"Loaded {path}")
