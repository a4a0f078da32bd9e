"""The one thread that runs MLX for the UI, and the model loaded on it.

MLX work (loading, generation) never runs on the event loop, and always on
the same thread: the model's arrays and the default stream stay with it.
Results go back as messages; `post_message` is thread-safe.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable, Optional

from textual.message_pump import MessagePump

from mlx_dpo.config import GenerateConfig
from mlx_dpo.errors import UserError
from mlx_dpo.model import Loaded, load_tuned

from .messages import AnswerDone, AnswerPiece, ModelReady


class ModelHost:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")
        self.loaded: Optional[Loaded] = None
        self.key: Optional[tuple[str, Optional[str]]] = None
        self.cancel = threading.Event()
        self.request = 0

    def submit(self, fn: Callable, *args) -> Future:
        return self.executor.submit(fn, *args)

    def _ensure(self, model: str, adapter: Optional[str]) -> Loaded:
        if self.key != (model, adapter or None):
            self.loaded, self.key = None, None  # free the old model before loading the next
            self.loaded = load_tuned(model, adapter or None)
            self.key = (model, adapter or None)
        return self.loaded

    def load(self, model: str, adapter: Optional[str], reply_to: MessagePump) -> Future:
        def job() -> None:
            try:
                self._ensure(model, adapter)
                reply_to.post_message(ModelReady(model, adapter))
            except UserError as e:
                reply_to.post_message(ModelReady(model, adapter, str(e)))
            except Exception as e:  # a broken model folder must not take the UI down
                reply_to.post_message(ModelReady(model, adapter, f"{e.__class__.__name__}: {e}"))

        return self.submit(job)

    def answer(self, model: str, adapter: Optional[str], messages: list[dict],
               slots: list[tuple[str, bool, GenerateConfig]], reply_to: MessagePump) -> int:
        """Stream one answer per slot (name, tuned?, sampling), one after the other; returns the request id.

        A newer request cancels the one still streaming.
        """
        from mlx_dpo.generate import stream_answer

        self.cancel.set()
        self.request += 1
        request = self.request

        def job() -> None:
            self.cancel.clear()
            for slot, tuned, gen in slots:
                parts: list[str] = []
                try:
                    loaded = self._ensure(model, adapter)
                    if tuned and not adapter:
                        raise UserError("no adapter loaded: pick an adapter folder for the tuned answer")
                    for piece in stream_answer(loaded.model, loaded.tokenizer, messages, replace(gen), tuned):
                        if self.cancel.is_set():
                            break
                        parts.append(piece)
                        reply_to.post_message(AnswerPiece(request, slot, piece))
                    reply_to.post_message(AnswerDone(request, slot, "".join(parts)))
                except UserError as e:
                    reply_to.post_message(AnswerDone(request, slot, "".join(parts), str(e)))
                except Exception as e:
                    reply_to.post_message(AnswerDone(request, slot, "".join(parts), f"{e.__class__.__name__}: {e}"))

        self.submit(job)
        return request

    def shutdown(self) -> None:
        self.cancel.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
