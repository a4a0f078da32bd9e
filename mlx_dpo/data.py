"""Preference rows from files, folders or the hub, validated into PreferencePairs.

Accepts the formats TRL's DPOTrainer accepts: explicit prompts (strings or
message lists), and implicit prompts where chosen and rejected are whole
conversations (or strings) that share a prefix.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .errors import UserError, brief
from .hub import fetch

Messages = list  # list of {"role": str, "content": str}
Text = Union[str, Messages]
ROLES = ("system", "user", "assistant", "tool")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_ERRORS = 50


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with a chosen and a rejected answer.

    Standard rows hold strings; conversational rows hold message lists
    (`prompt` ends before an assistant turn, `chosen`/`rejected` hold the
    assistant turns). `where` is "file:line", for messages about this row.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    system: Optional[str] = None
    where: str = ""

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)


@dataclass
class Split:
    name: str
    pairs: list[PreferencePair]
    files: list[str]
    identical_skipped: int = 0
    errors: list[str] = field(default_factory=list)


class RowError(ValueError):
    def __init__(self, field: Optional[str], message: str):
        self.field = field
        super().__init__(message)


# --- reading raw rows -------------------------------------------------------

def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows, or the UserError of a line that cannot be decoded (the next lines still can)."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    yield line_no, _loads(line.rstrip("\r\n"), path, line_no)
            except UnicodeDecodeError as e:
                yield line_no, UserError(f"invalid UTF-8 at byte {e.start}", file=str(path), line=line_no)
            except UserError as e:
                yield line_no, e


def _loads(text: str, path: Path, line_no: Optional[int]) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line = line_no if line_no is not None else e.lineno
        raise UserError(f"malformed JSON: {e.msg} (column {e.colno})", file=str(path), line=line) from None
    except RecursionError:
        raise UserError("malformed JSON: nested too deeply", file=str(path), line=line_no) from None


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array of rows; each row is reported at the line it starts on."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"invalid UTF-8 at byte {e.start}", file=str(path)) from None
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos < len(text) and text[pos] == "{":
        # A single object may wrap the rows (e.g. {"data": [...]}) or be one row.
        obj = _loads(text, path, None)
        rows = next((v for v in obj.values() if isinstance(v, list)), None) if isinstance(obj, dict) else None
        yield from ((1, r) for r in (rows if rows is not None else [obj]))
        return
    if pos >= len(text) or text[pos] != "[":
        _loads(text, path, None)  # raises a precise JSON error when the text is not JSON
        raise UserError("a .json data file must hold a list of rows", file=str(path))
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line_no = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed JSON: {e.msg} (column {e.colno})", file=str(path), line=e.lineno) from None
        except RecursionError:
            raise UserError("malformed JSON: nested too deeply", file=str(path), line=line_no) from None
        yield line_no, obj
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        raise UserError("malformed JSON: expected ',' or ']'", file=str(path), line=text.count("\n", 0, pos) + 1)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading .parquet needs pyarrow: pip install pyarrow", file=str(path)) from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises many types for a bad file
        raise UserError(f"cannot read parquet: {e}", file=str(path)) from None
    for i, row in enumerate(table.to_pylist(), start=1):
        yield i, row


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, decoded row or the UserError of an undecodable line) per row."""
    if not path.exists():
        raise UserError("file not found", file=str(path))
    if path.suffix == ".parquet":
        return _read_parquet(path)
    if path.suffix == ".json":
        return _read_json(path)
    return _read_jsonl(path)


# --- validating one row -----------------------------------------------------

def _messages(value: Any, name: str) -> Messages:
    if not value:
        raise RowError(name, "is empty")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise RowError(f"{name}[{i}]", f"must be a message object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RowError(f"{name}[{i}].role", f"must be one of {', '.join(ROLES)}, got {brief(role)}")
        if not isinstance(content, str):
            raise RowError(f"{name}[{i}].content", f"must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def _text(value: Any, name: str) -> Text:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _messages(value, name)
    raise RowError(name, f"must be a string or a list of messages, got {type(value).__name__}")


def _common_prefix_len(a: list | str, b: list | str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _split_strings(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Implicit prompt in plain text: cut at the shared prefix, on a turn or word boundary."""
    n = _common_prefix_len(chosen, rejected)
    prefix = chosen[:n]
    marker = prefix.rfind("Assistant:")  # hh-rlhf's "\n\nHuman: ...\n\nAssistant:" transcripts
    if marker >= 0:
        n = marker + len("Assistant:")
    elif n < min(len(chosen), len(rejected)):
        while n > 0 and not prefix[n - 1].isspace():
            n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _is_empty(text: Text) -> bool:
    if isinstance(text, str):
        return not text.strip()
    return not text or all(not m["content"].strip() for m in text)


def parse_row(row: Any, columns: Optional[dict] = None) -> Optional[PreferencePair]:
    """A validated pair, or None when chosen equals rejected (nothing to learn)."""
    if not isinstance(row, dict):
        raise RowError(None, f"a row must be a JSON object, got {type(row).__name__}")
    columns = columns or {}

    def get(name: str) -> Any:
        return row.get(columns.get(name, name))

    def col(name: str) -> str:
        return columns.get(name, name)

    for name in ("chosen", "rejected"):
        if get(name) is None:
            raise RowError(col(name), "is missing")
    chosen, rejected = _text(get("chosen"), col("chosen")), _text(get("rejected"), col("rejected"))
    prompt_raw, system = get("prompt"), get("system")
    if system is not None and not isinstance(system, str):
        raise RowError(col("system"), f"must be a string, got {type(system).__name__}")
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise RowError(col("rejected"), "must have the same form as 'chosen' (both strings or both message lists)")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if _is_empty(value):
            raise RowError(col(name), "is empty")

    if isinstance(chosen, list):
        if any(m["role"] != "assistant" for m in chosen + rejected):
            # Whole conversations: the shared turns are the prompt.
            n = _common_prefix_len(chosen, rejected)
            while n > 0 and chosen[n - 1]["role"] == "assistant":
                n -= 1
            prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
            if not prompt:
                raise RowError(col("chosen"), "chosen and rejected share no prompt turns")
        else:
            if prompt_raw is None:
                raise RowError(col("prompt"), "is missing (chosen/rejected hold only assistant turns)")
            prompt = _text(prompt_raw, col("prompt"))
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
        if prompt[-1]["role"] == "assistant":
            raise RowError(col("prompt"), "must end with a user turn, not an assistant turn")
    elif prompt_raw is None:
        prompt, chosen, rejected = _split_strings(chosen, rejected)
        if not prompt.strip():
            raise RowError(col("chosen"), "chosen and rejected share no prompt ('prompt' is missing)")
    else:
        prompt = _text(prompt_raw, col("prompt"))
        if isinstance(prompt, list):
            raise RowError(col("prompt"), "is a message list but chosen/rejected are strings")
    if _is_empty(prompt):
        raise RowError(col("prompt"), "is empty")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if _is_empty(value):
            raise RowError(col(name), "is empty once the shared prompt is removed")
    if chosen == rejected:
        return None
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, system=system)


def load_files(name: str, files: list[Path], columns: Optional[dict] = None,
               collect_errors: bool = False) -> Split:
    """Rows of one split. Stops at the first error unless `collect_errors`."""
    split = Split(name=name, pairs=[], files=[str(f) for f in files])
    for path in files:
        rows = 0
        try:
            for line_no, row in read_rows(path):
                rows += 1
                try:
                    if isinstance(row, UserError):
                        raise row
                    pair = parse_row(row, columns)
                except (RowError, UserError) as e:
                    err = e if isinstance(e, UserError) else UserError(str(e), file=str(path), line=line_no,
                                                                        field=e.field)
                    if not collect_errors:
                        raise err from None
                    split.errors.append(str(err))
                    continue
                if pair is None:
                    split.identical_skipped += 1
                else:
                    split.pairs.append(PreferencePair(pair.prompt, pair.chosen, pair.rejected,
                                                      pair.system, f"{path}:{line_no}"))
        except UserError as e:
            if not collect_errors:
                raise
            split.errors.append(str(e))
            continue
        if rows == 0:
            err = UserError("no rows (the file is empty)", file=str(path))
            if not collect_errors:
                raise err
            split.errors.append(str(err))
    if split.errors:
        split.errors = split.errors[:MAX_ERRORS]
    return split


# --- finding the files ------------------------------------------------------

def fetch_hub_dataset(repo_id: str) -> Path:
    """Download a dataset repo's data files with huggingface-hub."""
    from huggingface_hub import snapshot_download

    return fetch("dataset", repo_id, lambda: Path(snapshot_download(
        repo_id, repo_type="dataset", allow_patterns=["*.jsonl", "*.json", "*.parquet"])))


def resolve_source(data: str) -> Path:
    if not data:
        raise UserError("no data given: pass --data FILE, FOLDER or a hub dataset id")
    path = Path(data).expanduser()
    if path.exists():
        return path
    if HUB_ID.match(data) and path.suffix not in DATA_SUFFIXES:
        return fetch_hub_dataset(data)
    raise UserError("file not found", file=data)


def split_files(folder: Path, split: str) -> list[Path]:
    """Files of `split` in mlx-lm's layout (train.jsonl) or the hub's (data/train-00000-of-00002.parquet)."""
    for suffix in DATA_SUFFIXES:
        if (folder / f"{split}{suffix}").is_file():
            return [folder / f"{split}{suffix}"]
    shards = sorted(p for p in folder.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file()
                    and (p.stem == split or p.stem.startswith(f"{split}-") or p.parent.name == split))
    return shards


VALID_ALIASES = ("validation", "val", "dev")


def load_splits(data: str, split: str = "train", valid_split: str = "valid", test_split: str = "test",
                columns: Optional[dict] = None, val_fraction: float = 0.0, seed: int = 0,
                collect_errors: bool = False) -> dict[str, Split]:
    """train / valid / test splits of a data source (valid and test may be absent)."""
    source = resolve_source(data)
    if source.is_file():
        if source.suffix not in DATA_SUFFIXES:
            raise UserError(f"unsupported file type '{source.suffix}' (use {', '.join(DATA_SUFFIXES)})", file=str(source))
        splits = {"train": load_files("train", [source], columns, collect_errors)}
    else:
        train_files = split_files(source, split)
        if not train_files:
            raise UserError(f"no '{split}' split here (expected {split}.jsonl, {split}.json or {split}*.parquet)",
                            file=str(source))
        splits = {"train": load_files("train", train_files, columns, collect_errors)}
        valid_names = [valid_split] + (list(VALID_ALIASES) if valid_split == "valid" else [])
        for name, candidates in (("valid", valid_names), ("test", [test_split])):
            files = next((f for c in candidates if (f := split_files(source, c))), [])
            if files:
                splits[name] = load_files(name, files, columns, collect_errors)
    if "valid" not in splits and val_fraction > 0:
        train = splits["train"]
        order = list(range(len(train.pairs)))
        random.Random(seed).shuffle(order)
        n_valid = max(1, int(len(order) * val_fraction))
        keep = set(order[n_valid:])
        valid_pairs = [train.pairs[i] for i in sorted(order[:n_valid])]
        splits["valid"] = Split("valid", valid_pairs, train.files)
        train.pairs = [p for i, p in enumerate(train.pairs) if i in keep]
    if not collect_errors and not splits["train"].pairs:
        raise UserError("no usable preference pairs in the training split", file=", ".join(splits["train"].files))
    return splits
