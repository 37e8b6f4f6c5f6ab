"""Config: presets, precedence, files, unknown keys, types, validation, round trip."""

import json
import subprocess
import sys

import pytest

import config
from config import ConfigError, parse_config


def test_defaults_are_the_papers():
    cfg, _ = parse_config("pretrain", [])
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.temperature) == (40, 1e-3, 1e-9, 0.1)
    assert cfg.warmup_factors == (0.01, 0.05, 0.1, 0.5, 1.0) and cfg.plateau_patience == 9
    assert (cfg.data.clip_len, cfg.data.sparse_stride, cfg.data.num_local) == (16, 4, 4)
    assert cfg.data.color == "bgr" and cfg.data.resolution == 112 and not cfg.fused_forward
    assert cfg.data.color_ops == "release"  # PIL's RGB formulas on the BGR channels, as the release
    assert parse_config("linear", ["--color-ops", "true_channels"])[0].data.color_ops == "true_channels"
    lin, _ = parse_config("linear", [])
    assert (lin.lr, lin.batch_size, lin.plateau_patience, lin.min_lr) == (1e-2, 32, 3, 1e-5)
    assert lin.num_test_clips == 10 and lin.bn_mode == "frozen"
    ret, _ = parse_config("retrieval", [])
    assert ret.num_clips == 9 and ret.ks == (1, 5, 10, 20, 50)
    fin, _ = parse_config("finetune", [])
    assert fin.lr == 1e-4


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
@pytest.mark.parametrize("job", sorted(config.JOBS))
def test_every_preset_resolves_for_every_job(job, preset):
    cfg, _ = parse_config(job, ["--preset", preset])
    assert cfg.preset == preset


def test_precedence_preset_file_cli(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: demo\nwidth: 8\ndata:\n  split: 2\n  resolution: 48\n")
    cfg, _ = parse_config("pretrain", ["--config", str(f), "--resolution", "64"])
    assert cfg.preset == "demo" and cfg.data.dataset == "synthetic"     # from the preset
    assert cfg.width == 8 and cfg.data.split == 2                       # file beats preset
    assert cfg.data.resolution == 64                                    # flag beats file


def test_json_file_and_tuple_flags(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"warmup_factors": [0.5, 1.0], "fused_forward": True}))
    cfg, _ = parse_config("pretrain", ["--config", str(f)])
    assert cfg.warmup_factors == (0.5, 1.0) and cfg.fused_forward is True
    ret, _ = parse_config("retrieval", ["--ks", "1,5"])
    assert ret.ks == (1, 5)


@pytest.mark.parametrize("argv, fragment", [
    (["--bach-size", "4"], "did you mean: --batch-size"),
    (["--batch-size", "four"], "'batch_size': expected an integer"),
    (["--fused-forward", "maybe"], "expected a boolean"),
    (["--clip-len", "10"], "multiple of 4"),
    (["--color", "hsv"], "'color'"),
    (["--split", "4"], "'split'"),
    (["--preset", "imagenet"], "known presets"),
    (["--num-local", "3"], "derived"),
    (["--w-ic-global", "0", "--w-ic-local", "0", "--w-local-local", "0", "--w-global-local", "0"],
     "nothing to train"),
    (["--device", "tpu"], "'device'"),
])
def test_bad_values_fail_with_a_clear_message(argv, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config("pretrain", argv)
    assert fragment in str(info.value)


def test_file_unknown_key_and_wrong_type(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  splt: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'splt'.*split"):
        parse_config("pretrain", ["--config", str(f)])
    f.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="'lr': expected a number"):
        parse_config("pretrain", ["--config", str(f)])
    with pytest.raises(ConfigError, match="not found"):
        parse_config("pretrain", ["--config", str(tmp_path / "missing.yaml")])


def test_batch_must_divide_among_processes():
    cfg, _ = parse_config("pretrain", ["--batch-size", "40"], world_size=4)
    assert cfg.per_device_batch == 10
    with pytest.raises(ConfigError, match="does not divide"):
        parse_config("pretrain", ["--batch-size", "6"], world_size=4)
    with pytest.raises(ConfigError, match="smaller than"):
        parse_config("pretrain", ["--batch-size", "2"], world_size=4)


def test_saved_config_round_trips(tmp_path):
    cfg, _ = parse_config("finetune", ["--preset", "demo", "--lr", "0.003", "--split", "3"])
    path = config.save_config(cfg, tmp_path)
    again, _ = parse_config("finetune", ["--config", str(path)])
    assert config.to_dict(again) == config.to_dict(cfg)
    assert config.to_dict(config.finalize(config.from_dict("finetune", config.to_dict(cfg)))) \
        == config.to_dict(cfg)


def test_script_reports_bad_flag_without_traceback():
    proc = subprocess.run([sys.executable, "train_pretrain.py", "--batch-sise", "3"],
                          capture_output=True, text=True, cwd=config.__file__.rsplit("/", 1)[0])
    assert proc.returncode == 2
    assert "error: unknown option --batch-sise" in proc.stderr
    assert "Traceback" not in proc.stderr
