"""Flags, YAML and defaults map one to one onto TrainConfig; bad values are one line, exit 2."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from mlx_dpo import config
from mlx_dpo.cli import build_parser, flags, main
from mlx_dpo.errors import UserError


def parse(*argv):
    args = build_parser().parse_args(["train", *argv])
    return flags(args), args.config


def test_every_field_is_a_flag_and_a_yaml_key(tmp_path):
    parser_flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    fields = {f.name for f in dataclasses.fields(config.TrainConfig)}
    assert fields <= parser_flags
    yaml_file = tmp_path / "all.yaml"
    yaml_file.write_text(yaml.safe_dump(dataclasses.asdict(config.TrainConfig())))
    assert config.build(config.TrainConfig, {}, str(yaml_file)) == config.TrainConfig()


def test_precedence_flags_over_yaml_over_defaults(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("beta: 0.5\nlearning_rate: 2e-5\nlora-rank: 4\nlora_keys: [self_attn.q_proj]\n")
    values, _ = parse("--beta", "0.25", "--config", str(yaml_file))
    cfg = config.build(config.TrainConfig, values, str(yaml_file))
    assert cfg.beta == 0.25  # flag wins
    assert cfg.learning_rate == 2e-5 and cfg.lora_rank == 4  # YAML ("2e-5" is a string to PyYAML)
    assert cfg.lora_keys == ["self_attn.q_proj"]
    assert cfg.batch_size == config.TrainConfig().batch_size  # default


def test_list_dict_and_bool_flags():
    values, _ = parse("--lora-keys", "self_attn.q_proj,self_attn.v_proj", "--columns", "prompt=q,chosen=a",
                      "--no-chat-template", "--grad-checkpoint")
    cfg = config.build(config.TrainConfig, values)
    assert cfg.lora_keys == ["self_attn.q_proj", "self_attn.v_proj"]
    assert cfg.columns == {"prompt": "q", "chosen": "a"}
    assert cfg.chat_template is False and cfg.grad_checkpoint is True


def test_lora_alpha_sets_scale():
    assert config.TrainConfig(lora_rank=8, lora_alpha=16).scale() == 2.0
    assert config.TrainConfig(lora_scale=10.0).scale() == 10.0


@pytest.mark.parametrize("text, message", [
    ("beta: 0.1\nbogus: 3\n", "run.yaml:2: field 'bogus': unknown key"),
    ("beta: 0.1\nbatch_size: many\n", "run.yaml:2: field 'batch_size': must be a whole number, got 'many'"),
    ("beta: -1\n", "run.yaml: field 'beta': must be > 0, got -1.0"),
    ("loss_type: magic\n", "run.yaml: field 'loss_type': must be one of sigmoid, robust, hinge, ipo, dpop, "
                           "sppo_hard, nca_pair, bco_pair, apo_zero, apo_down, sigmoid_norm, sft, got 'magic'"),
    ("beta: [1\n", "run.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("- a\n- b\n", "run.yaml: a config file must be a mapping of keys to values"),
])
def test_yaml_mistakes_name_file_line_and_key(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(text)
    with pytest.raises(UserError) as e:
        config.build(config.TrainConfig, {}, "run.yaml")
    assert str(e.value) == message


def exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors exit from inside parse_args
        return e.code


@pytest.mark.parametrize("argv, message", [
    (["--beta", "0"], "error: --beta must be > 0, got 0.0"),
    (["--beta", "abc"], "error: --beta must be a number, got 'abc'"),
    (["--loss-type", "magic"], "error: mlx_dpo train: argument --loss-type: invalid choice: 'magic'"),
    (["--label-smoothing", "0.5"], "error: --label-smoothing must be in [0, 0.5), got 0.5"),
    (["--config", "missing.yaml"], "error: missing.yaml: config file not found"),
])
def test_bad_flags_are_one_line_exit_2(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert exit_code(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(message)


def test_flags_and_yaml_rebuild_the_config(tmp_path):
    cfg = config.build(config.TrainConfig, {
        "model": "m", "data": "d.jsonl", "grad_checkpoint": True, "chat_template": False, "grad_clip": "none",
        "lora_keys": "self_attn.q_proj,self_attn.v_proj", "columns": "prompt=q,chosen=a", "beta": 0.2,
        "lora_alpha": 16, "quantize": 4})
    args = build_parser().parse_args(["train", *config.to_flags(cfg)])
    assert config.build(config.TrainConfig, flags(args), None) == cfg
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml(cfg))
    assert config.build(config.TrainConfig, None, str(path)) == cfg
    assert config.to_flags(config.TrainConfig()) == [] and config.to_yaml(config.TrainConfig()) == "{}\n"
    assert config.to_flags(cfg)[:4] == ["--model", "m", "--data", "d.jsonl"]
