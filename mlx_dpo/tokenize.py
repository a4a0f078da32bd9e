"""PreferencePair -> token ids: chat template, EOS, truncation.

The prompt is shared by chosen and rejected and masked out of the loss;
each completion ends with EOS unless truncation cut it.

Without a chat template (or with --no-chat-template) rows are rendered in a
plain format: standard rows as `system + "\\n\\n" + prompt` followed directly
by the answer; conversational rows as "User: ...\\n" / "Assistant: ..." lines
with the prompt ending in "Assistant: ".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .data import PreferencePair, _common_prefix_len


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]

    @property
    def length(self) -> int:
        """Longest of the two sequences, what a batch must pad to."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclass
class TokenizeReport:
    kept: int = 0
    prompt_truncated: int = 0
    completion_truncated: int = 0
    dropped_empty_completion: int = 0
    template_fallback: int = 0
    dropped_where: list[str] = field(default_factory=list)

    def messages(self, max_length: int) -> list[str]:
        out = []
        if self.dropped_empty_completion:
            out.append(f"dropped {self.dropped_empty_completion} pair(s): the prompt leaves no room for an answer "
                       f"within --max-length {max_length} (first: {self.dropped_where[0]})")
        if self.prompt_truncated:
            out.append(f"{self.prompt_truncated} prompt(s) truncated by --max-prompt-length")
        if self.completion_truncated:
            out.append(f"{self.completion_truncated} answer(s) cut at --max-length (they lose their EOS)")
        if self.template_fallback:
            out.append(f"{self.template_fallback} row(s): the chat template does not render the prompt as a prefix "
                       "of prompt+answer; split at the common prefix instead")
        return out


def _prompt_messages(pair: PreferencePair) -> list[dict]:
    msgs = [{"role": "system", "content": pair.system}] if pair.system else []
    if isinstance(pair.prompt, str):
        return msgs + [{"role": "user", "content": pair.prompt}]
    return msgs + list(pair.prompt)


def _completion_messages(text: Any) -> list[dict]:
    return [{"role": "assistant", "content": text}] if isinstance(text, str) else list(text)


def _end_with_eos(ids: list[int], eos_ids: set[int], eos_id: int) -> list[int]:
    """Cut what a template puts after the closing EOS (often a newline), or add one."""
    last = max((i for i, t in enumerate(ids) if t in eos_ids), default=-1)
    return ids[: last + 1] if last >= 0 else ids + [eos_id]


def uses_template(tokenizer: Any, chat_template: bool) -> bool:
    return bool(chat_template and getattr(tokenizer, "chat_template", None))


def _plain_prompt(pair: PreferencePair) -> str:
    if isinstance(pair.prompt, str):
        return f"{pair.system}\n\n{pair.prompt}" if pair.system else pair.prompt
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in _prompt_messages(pair)]
    return "\n".join(lines) + "\nAssistant: "


def _plain_completion(text: Any) -> str:
    if isinstance(text, str):
        return text
    return "\n".join(m["content"] for m in text)


def render(pair: PreferencePair, tokenizer: Any, chat_template: bool = True,
           report: Optional[TokenizeReport] = None) -> TokenizedPair:
    """Untruncated ids for one pair."""
    eos_ids = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    eos_id = tokenizer.eos_token_id
    if uses_template(tokenizer, chat_template):
        prompt_msgs = _prompt_messages(pair)
        prompt = list(tokenizer.apply_chat_template(prompt_msgs, add_generation_prompt=True))
        fulls = [list(tokenizer.apply_chat_template(prompt_msgs + _completion_messages(c)))
                 for c in (pair.chosen, pair.rejected)]
        k = min(len(prompt), *(_common_prefix_len(prompt, f) for f in fulls))
        if k < len(prompt):
            if report is not None:
                report.template_fallback += 1
            prompt = prompt[:k]
        chosen, rejected = (_end_with_eos(f[k:], eos_ids, eos_id) for f in fulls)
    else:
        prompt = list(tokenizer.encode(_plain_prompt(pair)))
        chosen, rejected = (list(tokenizer.encode(_plain_completion(c), add_special_tokens=False)) + [eos_id]
                            for c in (pair.chosen, pair.rejected))
    return TokenizedPair(tuple(prompt), tuple(chosen), tuple(rejected))


def truncate(tp: TokenizedPair, max_length: int, max_prompt_length: int, mode: str = "keep_end",
             report: Optional[TokenizeReport] = None) -> Optional[TokenizedPair]:
    """Fit a pair into the limits; None when no answer token would be left."""
    prompt = tp.prompt_ids
    if len(prompt) > max_prompt_length:
        prompt = prompt[-max_prompt_length:] if mode == "keep_end" else prompt[:max_prompt_length]
        if report is not None:
            report.prompt_truncated += 1
    room = max_length - len(prompt)
    if room <= 0:
        return None
    chosen, rejected = tp.chosen_ids[:room], tp.rejected_ids[:room]
    if report is not None and (len(chosen) < len(tp.chosen_ids) or len(rejected) < len(tp.rejected_ids)):
        report.completion_truncated += 1
    return TokenizedPair(prompt, chosen, rejected)


def tokenize_pairs(pairs: list[PreferencePair], tokenizer: Any, max_length: int = 1024,
                   max_prompt_length: int = 512, truncation_mode: str = "keep_end",
                   chat_template: bool = True) -> tuple[list[TokenizedPair], TokenizeReport]:
    report = TokenizeReport()
    out = []
    for pair in pairs:
        tp = truncate(render(pair, tokenizer, chat_template, report), max_length, max_prompt_length,
                      truncation_mode, report)
        if tp is None:
            report.dropped_empty_completion += 1
            report.dropped_where.append(pair.where)
            continue
        out.append(tp)
    report.kept = len(out)
    return out, report
