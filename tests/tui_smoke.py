"""`python tests/tui_smoke.py tui ARGS...`: open the app headless with these CLI arguments and visit every tab.

The README test runs its `python -m mlx_dpo tui ...` commands through this, since a real terminal is not there.
"""

from __future__ import annotations

import asyncio
import sys


async def visit(argv: list[str]) -> None:
    from mlx_dpo.cli import build_parser, tui_app
    from textual.widgets import TabbedContent

    app = tui_app(build_parser().parse_args(argv))
    async with app.run_test(size=(80, 24)) as pilot:
        for i, tab in enumerate(("data", "config", "train", "chat", "label", "runs"), 1):
            await pilot.press(f"f{i}")
            await pilot.pause()
            assert app.screen.query_one(TabbedContent).active == tab
        print("settings valid:", app.train_config is not None)


if __name__ == "__main__":
    asyncio.run(visit(sys.argv[1:]))
