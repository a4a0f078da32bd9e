"""Every mistake a user can make in data or flags: one line naming file, line, field; exit 2."""

from __future__ import annotations

import pytest

from mlx_dpo.cli import main

from conftest import run_module, write_jsonl

GOOD = {"prompt": "Tell me about the cat.", "chosen": "Sure! The cat is calm.", "rejected": "No."}


def train_error(capsys, tiny_model, data, tmp_path, *extra):
    out = tmp_path / "run"
    rc = main(["train", "--model", str(tiny_model), "--data", str(data), "--adapter-path", str(out),
               "--iters", "1", "--progress", "none", *extra])
    err = capsys.readouterr().err.strip()
    assert not out.exists(), "nothing may be written when the input is bad"
    return rc, err


@pytest.mark.parametrize("line, expected", [
    ('{"prompt": "a", "chosen": "b", "rejected": "c"', "malformed JSON: Expecting ',' delimiter (column 47)"),
    ('{"prompt": "a", "chosen": "b"}', "field 'rejected': is missing"),
    ('{"prompt": "a", "chosen": 7, "rejected": "c"}', "field 'chosen': must be a string or a list of messages, got int"),
    ('{"prompt": "a", "chosen": "  ", "rejected": "c"}', "field 'chosen': is empty"),
    ('{"prompt": "a", "chosen": "b", "rejected": ""}', "field 'rejected': is empty"),
    ('["a", "b"]', "a row must be a JSON object, got list"),
    ('{"prompt": [{"role": "user", "content": 5}], "chosen": [{"role": "assistant", "content": "b"}], '
     '"rejected": [{"role": "assistant", "content": "c"}]}', "field 'prompt[0].content': must be a string, got int"),
    ('{"prompt": [{"role": "robot", "content": "a"}], "chosen": [{"role": "assistant", "content": "b"}], '
     '"rejected": [{"role": "assistant", "content": "c"}]}',
     "field 'prompt[0].role': must be one of system, user, assistant, tool, got 'robot'"),
    ('{"prompt": "a", "chosen": "b", "rejected": [{"role": "assistant", "content": "c"}]}',
     "field 'rejected': must have the same form as 'chosen' (both strings or both message lists)"),
    ('{"chosen": "Sure.", "rejected": "No."}', "field 'chosen': chosen and rejected share no prompt ('prompt' is missing)"),
    ('{"prompt": "a", "chosen": "b", "rejected": "c", "system": 3}', "field 'system': must be a string, got int"),
])
def test_bad_rows(capsys, tiny_model, tmp_path, line, expected):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, line])
    rc, err = train_error(capsys, tiny_model, data, tmp_path)
    assert rc == 2
    assert err == f"error: {data}:2: {expected}"


def test_missing_file(capsys, tiny_model, tmp_path):
    rc, err = train_error(capsys, tiny_model, tmp_path / "nope.jsonl", tmp_path)
    assert (rc, err) == (2, f"error: {tmp_path / 'nope.jsonl'}: file not found")


def test_empty_file(capsys, tiny_model, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n\n")
    rc, err = train_error(capsys, tiny_model, data, tmp_path)
    assert (rc, err) == (2, f"error: {data}: no rows (the file is empty)")


def test_invalid_utf8(capsys, tiny_model, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "\xff\xfe"}\n')
    rc, err = train_error(capsys, tiny_model, data, tmp_path)
    assert (rc, err) == (2, f"error: {data}:2: invalid UTF-8 at byte 12")


def test_identical_pairs_warn_and_are_skipped(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, GOOD, {"prompt": "a", "chosen": "same", "rejected": "same"}])
    events = []
    from mlx_dpo import TrainConfig, train

    train(TrainConfig(model=str(tiny_model), data=str(data), adapter_path=str(tmp_path / "run"), iters=1,
                      batch_size=2, progress="none"), on_event=events.append)
    warnings = [e["text"] for e in events if e["event"] == "message"]
    assert "train: skipped 1 pair(s) whose chosen equals rejected" in warnings


def test_data_check_lists_every_error_with_exit_2(capsys, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, '{"prompt": "a"', {"prompt": "a", "chosen": "b"},
                                                  {"prompt": "a", "chosen": "x", "rejected": "x"}, GOOD])
    rc = main(["data", "check", str(data), "--model", str(tiny_model)])
    out = capsys.readouterr().out
    assert rc == 2
    assert f"{data}:2: malformed JSON" in out and f"{data}:3: field 'rejected': is missing" in out
    assert "2 error(s):" in out
    table_row = next(line for line in out.splitlines() if line.startswith("train"))
    assert table_row.split()[:4] == ["train", "2", "1", "2"]


def test_data_check_shows_counts_lengths_and_the_masked_prompt(capsys, tiny_model, pref_data):
    rc = main(["data", "check", str(pref_data), "--model", str(tiny_model)])
    out = capsys.readouterr().out
    assert rc == 0
    assert [line.split()[:3] for line in out.splitlines()[1:4]] == [["train", "64", "0"], ["valid", "16", "0"],
                                                                    ["test", "16", "0"]]
    assert "--- prompt: masked," in out and "--- chosen: scored," in out
    assert "nothing truncated at --max-length 1024" in out


def test_data_check_reports_truncation(capsys, tiny_model, pref_data):
    rc = main(["data", "check", str(pref_data), "--model", str(tiny_model), "--max-length", "20",
               "--max-prompt-length", "14"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "prompt(s) truncated by --max-prompt-length" in out and "answer(s) cut at --max-length" in out


def test_process_exit_code_and_no_traceback(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", ['{"prompt": "a", "chosen": 1, "rejected": "c"}'])
    proc = run_module("train", "--model", str(tiny_model), "--data", str(data), "--adapter-path",
                      str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {data}:1: field 'chosen': must be a string or a list of messages, got int"]
    assert not (tmp_path / "run").exists()
