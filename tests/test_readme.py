"""Every command in the README runs (offline variants: the tiny model stands in for hub models)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HUB_MODEL = re.compile(r"mlx-community/[\w.-]+")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_setup_commands_are_what_ci_runs():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert readme_commands()[:2] == ci


def offline(cmd: str, model: str) -> tuple[list[str], str]:
    """The command as the test runs it, and what it is fed on stdin."""
    argv = shlex.split(HUB_MODEL.sub(model, cmd))
    stdin = ""
    if argv[:2] == ["python", "-m"] or argv[0] == "python":
        argv[0] = sys.executable
    sub = argv[3] if argv[1:3] == ["-m", "mlx_dpo"] else None
    if sub == "demo":
        argv += ["--quick", "--out", "demo_run"]
    elif sub in ("train", "sweep"):
        # A resumed run gets two more steps than the run it continues.
        argv += ["--iters", "4" if "--resume" in argv else "2", "--progress", "none"]
    elif sub == "generate":
        argv += ["--max-tokens", "4"]
    elif sub == "chat":
        argv += ["--max-tokens", "4"]
        stdin = "How do I make tea?\n/quit\n"
    elif sub == "tui":  # no terminal here: the same arguments, headless, every tab visited
        argv = [sys.executable, str(ROOT / "tests" / "tui_smoke.py"), *argv[3:]]
    elif argv[0] == "mlx.launch":
        at = argv.index("python")
        argv = [str(Path(sys.executable).parent / "mlx.launch"), *argv[1:at], sys.executable, *argv[at + 1:],
                "--iters", "2", "--progress", "none"]
    elif argv[0] == "mlx_lm.generate":
        argv = [sys.executable, "-m", "mlx_lm", "generate", *argv[1:], "--max-tokens", "4"]
    elif argv[0] == "bash" and argv[1] == "examples/sft_then_dpo.sh":
        argv += ["2"]
    elif argv[:2] == [sys.executable, "examples/api.py"]:
        argv += ["api_example"]
    elif sub not in ("data", "eval", "fuse"):
        raise AssertionError(f"README command with no offline variant in this test: {cmd}")
    return argv, stdin


def test_every_readme_command_runs(tiny_model, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples")
    for cfg in (work / "examples" / "configs").glob("*.yaml"):
        data = yaml.safe_load(cfg.read_text())
        data.update(model=str(tiny_model), num_layers=-1)  # the tiny model has 2 blocks
        cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in readme_commands()[2:]:
        argv, stdin = offline(cmd, str(tiny_model))
        proc = subprocess.run(argv, cwd=work, input=stdin, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"
        if argv[3:4] == ["demo"]:  # the demo's last line opens its result in the app: that command works too
            line = next(line for line in proc.stdout.splitlines() if "python -m mlx_dpo tui" in line)
            app_args = shlex.split(line.split("python -m mlx_dpo", 1)[1])
            smoke = subprocess.run([sys.executable, str(ROOT / "tests" / "tui_smoke.py"), *app_args], cwd=work,
                                   capture_output=True, text=True, env=env, timeout=120)
            assert smoke.returncode == 0 and "settings valid: True" in smoke.stdout, smoke.stderr[-2000:]
        if "--resume" in argv:
            from mlx_dpo.checkpoint import find_checkpoint

            assert find_checkpoint(work / "runs" / "qwen0.5b-dpo")["step"] == 4, cmd
            steps = [line for line in (work / "runs" / "qwen0.5b-dpo" / "metrics.jsonl").read_text().splitlines()
                     if '"event": "train"' in line]
            assert len(steps) == 4, cmd
    assert (work / "runs" / "qwen0.5b-dpo-fused" / "config.json").is_file()
    assert (work / "runs" / "beta-sweep" / "sweep.json").is_file()
    assert (work / "runs" / "sft-dpo" / "adapters.safetensors").is_file()
    assert (work / "runs" / "two-ranks" / "trainer_state.json").is_file()


@pytest.mark.parametrize("config, arch", [("mac-8gb-qwen2.5-0.5b.yaml", "qwen2.5-0.5b"),
                                          ("mac-16gb-llama3.2-3b.yaml", "llama3.2-3b"),
                                          ("mac-32gb-llama3.1-8b.yaml", "llama3.1-8b")])
def test_example_configs_state_their_estimated_memory(config, arch):
    from mlx_dpo.known_models import ARCHS

    from mlx_dpo.memory import GB, peak_bytes, shape_of_config

    path = ROOT / "examples" / "configs" / config
    cfg = yaml.safe_load(path.read_text())
    shape = shape_of_config(ARCHS[arch], 4, cfg["lora_rank"], cfg["num_layers"])
    estimate = peak_bytes(shape, cfg["batch_size"], cfg["max_length"], cfg["grad_checkpoint"],
                          cfg["grad_accumulation_steps"]) / GB
    stated = f"{estimate:.1f} GB"
    assert f"Expected peak memory: about {stated}" in path.read_text()
    assert f"`examples/configs/{config}`" in (ROOT / "README.md").read_text()
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if f"`examples/configs/{config}`" in line)
    assert row.rstrip(" |").endswith(stated)
