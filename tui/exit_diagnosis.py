"""What a training subprocess's exit means, and what to try next."""

from __future__ import annotations

import signal

OOM_HINTS = ("Try: a smaller --batch-size (with more --grad-accumulation-steps to keep the effective batch), "
             "--grad-checkpoint, or a shorter --max-length. Then Resume: the last checkpoint is kept.")

OOM_MARKERS = ("out of memory", "insufficient memory", "outofmemory", "std::bad_alloc", "memoryerror",
               "failed to allocate", "exceeds the", "kiocgpucommandbuffercallbackerroroutofmemory")


def explain_exit(returncode: int, stderr_tail: list[str]) -> tuple[str, str]:
    """(severity, text) for the Train tab's status line: "ok", "stopped", "error" or "oom"."""
    text = "\n".join(stderr_tail).lower()
    last = next((line for line in reversed(stderr_tail) if line.strip()), "")
    if returncode == 0:
        return "ok", "Training finished."
    if returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        return "stopped", "Stopped; a checkpoint was saved. Resume continues from it."
    killed = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    if killed or any(m in text for m in OOM_MARKERS):
        why = "was killed (most often the system ran out of memory)" if killed else "ran out of memory"
        return "oom", f"The training process {why}. {OOM_HINTS}"
    if returncode == 2:
        return "error", last.removeprefix("error: ") or "The run was refused (exit code 2)."
    return "error", f"The training process exited with code {returncode}: {last or 'no message'}"
