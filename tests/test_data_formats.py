"""Every accepted data format, down to exact token ids and loss masks."""

from __future__ import annotations


import numpy as np
import pytest

from mlx_dpo.batching import collate
from mlx_dpo.data import load_splits, parse_row
from mlx_dpo.tokenize import render, tokenize_pairs, truncate, TokenizedPair, TokenizeReport

from conftest import write_jsonl

IM_END = "<|im_end|>"


def enc(tok, text):
    return list(tok.encode(text, add_special_tokens=False))


def chatml(*turns, gen=True):
    text = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns)
    return text + ("<|im_start|>assistant\n" if gen else "")


def rendered(tok, row):
    return render(parse_row(row), tok)


def test_standard_row_exact_ids(tokenizer):
    tp = rendered(tokenizer, {"prompt": "Tell me about the cat.", "chosen": "Sure! The cat is quiet.",
                              "rejected": "No."})
    assert list(tp.prompt_ids) == enc(tokenizer, chatml(("user", "Tell me about the cat.")))
    assert list(tp.chosen_ids) == enc(tokenizer, "Sure! The cat is quiet." + IM_END)
    assert list(tp.rejected_ids) == enc(tokenizer, "No." + IM_END)
    # The completion ends at EOS: the newline the template puts after it is not trained.
    assert tp.chosen_ids[-1] == tokenizer.eos_token_id


def test_standard_row_with_system(tokenizer):
    tp = rendered(tokenizer, {"system": "Be brief.", "prompt": "Hello!", "chosen": "Hello! How are you?",
                              "rejected": "Bonjour."})
    assert list(tp.prompt_ids) == enc(tokenizer, chatml(("system", "Be brief."), ("user", "Hello!")))


def test_conversational_multi_turn(tokenizer):
    row = {
        "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello!"},
                   {"role": "assistant", "content": "Hello! How are you?"},
                   {"role": "user", "content": "What is two plus two?"}],
        "chosen": [{"role": "assistant", "content": "It is four."}],
        "rejected": [{"role": "assistant", "content": "A bad answer."}],
    }
    tp = rendered(tokenizer, row)
    assert list(tp.prompt_ids) == enc(tokenizer, chatml(("system", "Be kind."), ("user", "Hello!"),
                                                        ("assistant", "Hello! How are you?"),
                                                        ("user", "What is two plus two?")))
    assert list(tp.chosen_ids) == enc(tokenizer, "It is four." + IM_END)
    assert list(tp.rejected_ids) == enc(tokenizer, "A bad answer." + IM_END)


def test_implicit_prompt_conversations(tokenizer):
    shared = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "What is two plus two?"}]
    row = {"chosen": shared + [{"role": "assistant", "content": "It is four."}],
           "rejected": shared + [{"role": "assistant", "content": "A bad answer."}]}
    pair = parse_row(row)
    assert pair.prompt == shared
    assert pair.chosen == [{"role": "assistant", "content": "It is four."}]
    tp = render(pair, tokenizer)
    assert list(tp.prompt_ids) == enc(tokenizer, chatml(("user", "Hello!"), ("assistant", "Hello!"),
                                                        ("user", "What is two plus two?")))


def test_implicit_prompt_when_answers_start_alike(tokenizer):
    """The shared prefix stops at whole turns even when both answers begin the same way."""
    shared = [{"role": "user", "content": "Hello!"}]
    row = {"chosen": shared + [{"role": "assistant", "content": "It is four."}],
           "rejected": shared + [{"role": "assistant", "content": "It is five."}]}
    pair = parse_row(row)
    assert pair.prompt == shared and pair.rejected[0]["content"] == "It is five."


def test_ultrafeedback_style_prompt_plus_full_conversations(tokenizer):
    row = {"prompt": "What is two plus two?",
           "chosen": [{"role": "user", "content": "What is two plus two?"},
                      {"role": "assistant", "content": "It is four."}],
           "rejected": [{"role": "user", "content": "What is two plus two?"},
                        {"role": "assistant", "content": "A bad answer."}]}
    pair = parse_row(row)
    assert pair.prompt == [{"role": "user", "content": "What is two plus two?"}]
    assert pair.chosen == [{"role": "assistant", "content": "It is four."}]


def test_implicit_prompt_hh_rlhf_strings():
    row = {"chosen": "\n\nHuman: What is two plus two?\n\nAssistant: It is four.",
           "rejected": "\n\nHuman: What is two plus two?\n\nAssistant: It is five."}
    pair = parse_row(row)
    assert pair.prompt == "\n\nHuman: What is two plus two?\n\nAssistant:"
    assert pair.chosen == " It is four." and pair.rejected == " It is five."


def test_implicit_prompt_plain_strings_split_on_a_word_boundary():
    pair = parse_row({"chosen": "The cat is quiet", "rejected": "The cat is quick"})
    assert (pair.prompt, pair.chosen, pair.rejected) == ("The cat is ", "quiet", "quick")


def test_plain_format_without_chat_template(tiny_model_plain):
    from mlx_lm.utils import load_tokenizer

    tok = load_tokenizer(tiny_model_plain)
    pair = parse_row({"system": "Be brief.", "prompt": "Hello!", "chosen": "It is four.", "rejected": "No."})
    tp = render(pair, tok)
    assert list(tp.prompt_ids) == enc(tok, "Be brief.\n\nHello!")
    assert list(tp.chosen_ids) == enc(tok, "It is four.") + [tok.eos_token_id]
    conv = parse_row({"prompt": [{"role": "user", "content": "Hello!"}],
                      "chosen": [{"role": "assistant", "content": "It is four."}],
                      "rejected": [{"role": "assistant", "content": "No."}]})
    assert list(render(conv, tok).prompt_ids) == enc(tok, "User: Hello!\nAssistant: ")


def test_no_chat_template_flag_feeds_raw_text(tokenizer):
    pair = parse_row({"prompt": "Hello!", "chosen": "It is four.", "rejected": "No."})
    tp = render(pair, tokenizer, chat_template=False)
    assert list(tp.prompt_ids) == enc(tokenizer, "Hello!")
    assert list(tp.chosen_ids) == enc(tokenizer, "It is four.") + [tokenizer.eos_token_id]


def test_template_that_breaks_the_prefix_falls_back(tokenizer):
    """A generation prompt the full rendering does not contain: split at the common prefix, counted."""
    hf = tokenizer._tokenizer
    saved = hf.chat_template
    hf.chat_template = saved.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\nThink.{% endif %}")
    try:
        report = TokenizeReport()
        tp = render(parse_row({"prompt": "Hello!", "chosen": "It is four.", "rejected": "No."}), tokenizer,
                    report=report)
    finally:
        hf.chat_template = saved
    assert report.template_fallback == 1
    full = enc(tokenizer, chatml(("user", "Hello!"), ("assistant", "It is four."), gen=False))
    assert list(tp.prompt_ids + tp.chosen_ids) == full[:len(tp.prompt_ids) + len(tp.chosen_ids)]
    assert tp.chosen_ids[-1] == tokenizer.eos_token_id


def test_truncation_modes_and_drop():
    tp = TokenizedPair(tuple(range(10)), (100, 101, 102, 103), (200, 201))
    end = truncate(tp, max_length=8, max_prompt_length=6, mode="keep_end")
    assert end.prompt_ids == (4, 5, 6, 7, 8, 9) and end.chosen_ids == (100, 101) and end.rejected_ids == (200, 201)
    start = truncate(tp, max_length=8, max_prompt_length=6, mode="keep_start")
    assert start.prompt_ids == (0, 1, 2, 3, 4, 5)
    assert truncate(tp, max_length=6, max_prompt_length=6) is None


def test_dropped_pairs_are_counted_and_explained(tokenizer):
    pairs = [parse_row({"prompt": "Tell me about the cat. " * 8, "chosen": "Sure!", "rejected": "No."}),
             parse_row({"prompt": "Hello!", "chosen": "Sure!", "rejected": "No."})]
    kept, report = tokenize_pairs(pairs, tokenizer, max_length=24, max_prompt_length=100)
    assert len(kept) == 1 and report.dropped_empty_completion == 1
    assert "dropped 1 pair(s)" in report.messages(24)[0]


def test_collate_stacks_chosen_first_with_completion_mask():
    a = TokenizedPair((1, 2, 3), (10, 11), (20,))
    b = TokenizedPair((4,), (12, 13, 14), (21, 22))
    batch = collate([a, b], [7, 9], pad_id=0, pad_to_multiple=4)
    tokens, mask = np.array(batch.tokens), np.array(batch.mask)
    assert tokens.tolist() == [[1, 2, 3, 10, 11, 0, 0, 0], [4, 12, 13, 14, 0, 0, 0, 0],
                               [1, 2, 3, 20, 0, 0, 0, 0], [4, 21, 22, 0, 0, 0, 0, 0]]
    assert mask.tolist() == [[0, 0, 0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0, 0, 0],
                             [0, 0, 0, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]
    assert batch.indices == [7, 9] and batch.n_tokens == 5 + 4 + 4 + 3


def test_column_remapping(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "Hello!", "good": "Hi.", "bad": "Go away."}])
    splits = load_splits(str(path), columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    pair = splits["train"].pairs[0]
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hello!", "Hi.", "Go away.")


def test_json_array_file_reports_real_lines(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text('[\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n  {"prompt": "a", "chosen": 3,'
                    ' "rejected": "c"}\n]\n')
    with pytest.raises(Exception) as e:
        load_splits(str(path))
    assert str(e.value) == f"{path}:3: field 'chosen': must be a string or a list of messages, got int"


def test_folder_with_splits_and_validation_alias(tmp_path):
    row = {"prompt": "a", "chosen": "b", "rejected": "c"}
    write_jsonl(tmp_path / "train.jsonl", [row] * 3)
    write_jsonl(tmp_path / "validation.jsonl", [row] * 2)
    write_jsonl(tmp_path / "test.jsonl", [row])
    splits = load_splits(str(tmp_path))
    assert {k: len(v.pairs) for k, v in splits.items()} == {"train": 3, "valid": 2, "test": 1}


def test_split_flag_picks_hub_style_shards(tmp_path):
    row = {"prompt": "a", "chosen": "b", "rejected": "c"}
    write_jsonl(tmp_path / "data" / "train_prefs-00000-of-00002.jsonl", [row] * 2)
    write_jsonl(tmp_path / "data" / "train_prefs-00001-of-00002.jsonl", [row] * 3)
    write_jsonl(tmp_path / "data" / "test_prefs-00000-of-00001.jsonl", [row])
    splits = load_splits(str(tmp_path), split="train_prefs", test_split="test_prefs")
    assert len(splits["train"].pairs) == 5 and len(splits["test"].pairs) == 1


def test_val_fraction_carves_a_validation_split(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": "b", "rejected": "c"} for i in range(20)]
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    splits = load_splits(str(path), val_fraction=0.25, seed=3)
    assert len(splits["train"].pairs) == 15 and len(splits["valid"].pairs) == 5
    assert not {p.prompt for p in splits["train"].pairs} & {p.prompt for p in splits["valid"].pairs}


def test_parquet_reads_or_says_what_is_missing(tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pa = None
    path = tmp_path / "train.parquet"
    if pa is None:
        path.write_bytes(b"PAR1")
        with pytest.raises(Exception) as e:
            load_splits(str(path))
        assert str(e.value) == f"{path}: reading .parquet needs pyarrow: pip install pyarrow"
    else:
        pq.write_table(pa.Table.from_pylist([{"prompt": "a", "chosen": "b", "rejected": "c"}]), path)
        assert load_splits(str(path))["train"].pairs[0].chosen == "b"


def test_hub_dataset_from_the_local_hub_cache(tmp_path, pref_data):
    """The real huggingface-hub code path, served from a local cache folder (offline)."""
    from conftest import run_module

    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--alice--prefs"
    snap = repo / "snapshots" / rev / "data"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    (snap / "train-00000-of-00001.jsonl").write_text((pref_data / "train.jsonl").read_text())
    (snap / "test-00000-of-00001.jsonl").write_text((pref_data / "test.jsonl").read_text())
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    code = ("from mlx_dpo.data import load_splits; s = load_splits('alice/prefs');"
            "print({k: len(v.pairs) for k, v in s.items()})")
    import subprocess
    import sys
    import os
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert out.stdout.strip() == "{'train': 64, 'test': 16}", out.stderr
    missing = run_module("data", "check", "alice/missing", "--model", "x", env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: alice/missing: cannot fetch dataset from the Hugging Face hub: "
                                      "not reachable and not in the local cache")
