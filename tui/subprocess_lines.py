"""Run a command (`python -m mlx_dpo ...`) and hand over its output line by line, without blocking the UI."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import deque
from typing import Awaitable, Callable, Optional

LineHandler = Callable[[str], Optional[Awaitable[None]]]


def mlx_dpo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlx_dpo", *args]


class LineProcess:
    """One child process; `stop()` sends SIGINT, which our commands answer by checkpointing and exiting."""

    def __init__(self, argv: list[str], cwd: Optional[str] = None) -> None:
        self.argv, self.cwd = argv, cwd
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.stderr_tail: deque[str] = deque(maxlen=40)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def run(self, on_stdout: LineHandler, on_stderr: LineHandler) -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRANSFORMERS_VERBOSITY": "error",
               "TOKENIZERS_PARALLELISM": "false"}
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # a Ctrl-C in the terminal goes to the UI, not to the run

        async def pump(stream: asyncio.StreamReader, handle: LineHandler, keep: bool) -> None:
            while raw := await stream.readline():
                # tqdm and friends redraw with \r; each redraw is a line for us
                for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                    if not line.strip():
                        continue
                    if keep:
                        self.stderr_tail.append(line)
                    result = handle(line)
                    if result is not None:
                        await result

        await asyncio.gather(pump(self.proc.stdout, on_stdout, False), pump(self.proc.stderr, on_stderr, True))
        return await self.proc.wait()

    def stop(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
