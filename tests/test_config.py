"""Config: presets, precedence, files, unknown keys, types, validation, round trip."""

import json
import subprocess
import sys

import pytest

import confkit
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
    assert lin.lr_rule == "release"  # linear_eval/train.py's counter, not the consecutive rule
    # evaluation precision: float32 as the release (no autocast in linear_eval/, nn_retrieval/);
    # pretraining keeps the release's fp16 autocast and finetuning (not in the release) its 'auto'
    assert lin.amp == "off" and parse_config("retrieval", [])[0].amp == "off"
    assert cfg.amp == "auto" and parse_config("finetune", [])[0].amp == "auto"
    assert parse_config("linear", ["--amp", "bf16"])[0].amp == "bf16"
    ret, _ = parse_config("retrieval", [])
    assert ret.num_clips == 9 and ret.ks == (1, 5, 10, 20, 50)
    fin, _ = parse_config("finetune", [])
    assert fin.lr == 1e-4


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
@pytest.mark.parametrize("job", sorted(config.JOBS))
def test_every_preset_resolves_for_every_job(job, preset):
    """Each of the preset's keys that the job has ends up in the resolved config with the preset's
    value; the keys the job does not have are exactly those of other jobs (skipped, not lost)."""
    cfg, _ = parse_config(job, ["--preset", preset])
    assert cfg.preset == preset
    leaves = config.leaf_fields(config.JOBS[job])
    resolved = {name: confkit.get_value(cfg, path) for name, (path, _f, _t) in leaves.items()}
    values = config.PRESETS[preset]
    assert {k: resolved[k] for k in values if k in leaves} == {k: v for k, v in values.items()
                                                                if k in leaves}
    every_job = set().union(*(config.leaf_fields(cls) for cls in config.JOBS.values()))
    assert set(values) <= every_job, set(values) - every_job


# The presets by hand (the paper's settings, TCLR_SPEC section 8, and the demos' sizes): a change
# to presets.py must be a change here too.
PRESET_VALUES = {
    ("ucf101_r3d18", "retrieval"): {"dataset": "ucf101", "split": 1, "width": 64,
                                    "resolution": 112, "backbone": "r3d18"},
    ("ucf101_c3d", "linear"): {"backbone": "c3d", "width": 64, "resolution": 112},
    ("k400_r2plus1d18", "pretrain"): {"dataset": "kinetics400", "backbone": "r2plus1d18"},
    ("demo", "pretrain"): {"dataset": "synthetic", "data_root": "data/synthetic_demo",
                           "width": 16, "resolution": 32, "batch_size": 10, "amp": "off",
                           "channels_last": True, "warmup_factors": (0.1, 0.5, 1.0),
                           "synthetic_classes": 6, "synthetic_videos_per_class": 30},
    ("demo_linear", "linear"): {"width": 16, "resolution": 32, "bn_mode": "train",
                                "select": "last", "val_fraction": 0.0, "num_test_clips": 3},
    ("learning", "pretrain"): {"width": 8, "resolution": 24, "batch_size": 20,
                               "synthetic_design": "switch", "synthetic_videos_per_class": 180},
}


@pytest.mark.parametrize("preset, job", sorted(PRESET_VALUES))
def test_presets_hold_the_documented_values(preset, job):
    cfg, _ = parse_config(job, ["--preset", preset])
    flat = {**config.to_dict(cfg), **config.to_dict(cfg)["data"]}
    expected = {k: list(v) if isinstance(v, tuple) else v
                for k, v in PRESET_VALUES[preset, job].items()}
    assert {k: flat[k] for k in expected} == expected


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
     "all loss weights are 0"),
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


# --------------------------------------------------------------------------------------------
# --help by section, per job; --print-config sources
# --------------------------------------------------------------------------------------------

def _help(job: str, show_all: bool = False) -> str:
    return config.build_parser(job, show_all=show_all).format_help()


def test_help_is_grouped_and_shows_only_the_jobs_flags():
    retrieval, pretrain = _help("retrieval"), _help("pretrain")
    # pretraining-only and synthetic-generator flags are not in retrieval's help...
    for flag in ("--sparse-stride", "--augment-on", "--color-ops", "--synthetic-classes",
                 "--synthetic-frames",
                 "--lr", "--temperature", "--w-local-local", "--resume", "--log-every-steps",
                 "--max-steps-per-epoch", "--select", "--bn-mode"):
        assert flag not in retrieval, flag
    # ...but in pretraining's, and retrieval's own flags are not in pretraining's
    for flag in ("--sparse-stride", "--synthetic-classes", "--temperature", "--resume"):
        assert flag in pretrain, flag
    for flag in ("--num-grid-queries", "--ks", "--num-clips", "--checkpoint"):
        assert flag in retrieval and flag not in pretrain, flag
    assert "--select" in _help("linear") and "--bn-mode" not in _help("finetune")
    # sections in order; retrieval has no optimisation or loss section
    titles = [line[:-1] for line in pretrain.splitlines() if line in
              {f"{s}:" for s in config.HELP_SECTIONS}]
    # pretraining's evaluation section holds the monitor (--monitor-every, --keep-best)
    assert titles == ["data", "model", "optimisation", "loss", "evaluation", "runtime"]
    assert "\noptimisation:\n" not in retrieval and "\nloss:\n" not in retrieval
    assert "--monitor-every" in pretrain.split("\nevaluation:\n", 1)[1].split("\nruntime:\n")[0]
    loss = pretrain.split("\nloss:\n", 1)[1].split("\nevaluation:\n", 1)[0]
    assert "--temperature" in loss and "--w-ic-global" in loss and "--lr" not in loss
    # the presets, described
    assert "presets (--preset NAME" in retrieval
    assert "demo               CPU-sized" in retrieval and "ucf101_c3d" in retrieval
    assert "synthetic_classes" not in retrieval       # preset values of hidden flags not listed


def test_hidden_flags_are_still_accepted_and_help_all_lists_them():
    cfg, _ = parse_config("retrieval", ["--synthetic-classes", "3", "--sparse-stride", "2"])
    assert cfg.data.synthetic_classes == 3 and cfg.data.sparse_stride == 2
    everything = _help("retrieval", show_all=True)
    assert "--synthetic-classes" in everything and "--augment-on" in everything
    proc = subprocess.run([sys.executable, "nn_retrieval.py", "--help-all"], capture_output=True,
                          text=True, cwd=config.__file__.rsplit("/", 1)[0])
    assert proc.returncode == 0 and "--synthetic-frames" in proc.stdout


def test_print_config_names_each_values_source(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.002\ndata:\n  split: 2\n")
    argv = ["--preset", "demo", "--config", str(path), "--epochs", "3", "--print-config"]
    cfg, args = parse_config("pretrain", argv)
    sources = config.value_sources("pretrain", args)
    assert sources["width"] == "preset demo"
    assert sources["lr"] == sources["split"] == f"file {path}"
    assert sources["epochs"] == "flag --epochs" and sources["preset"] == "flag --preset"
    assert sources["temperature"] == "default" and sources["num_local"] == "derived"
    lines = config.describe(cfg, sources).splitlines()
    assert any(line.split()[0] == "width" and line.endswith("# preset demo") for line in lines)
    # a flag beats the file, the file beats the preset
    _, args = parse_config("pretrain", argv + ["--lr", "0.5", "--width", "8"])
    assert config.value_sources("pretrain", args)["lr"] == "flag --lr"
    path.write_text("preset: demo\nwidth: 32\n")
    _, args = parse_config("pretrain", ["--config", str(path)])
    sources = config.value_sources("pretrain", args)
    assert sources["width"] == f"file {path}" and sources["resolution"] == "preset demo"
    assert sources["preset"] == f"file {path}"
    proc = subprocess.run([sys.executable, "train_pretrain.py", *argv], capture_output=True,
                          text=True, cwd=config.__file__.rsplit("/", 1)[0])
    assert proc.returncode == 0 and "# flag --epochs" in proc.stdout


def test_synthetic_generator_help_shows_defaults():
    proc = subprocess.run([sys.executable, "-m", "dataloaders.synthetic", "--help"],
                          capture_output=True, text=True, cwd=config.__file__.rsplit("/", 1)[0])
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())               # argparse wraps lines
    for fragment in ("number of classes: 2..12 (varied), 2..6 (trajectory), 2..6 (switch) (default: 10)",
                     "(default: varied)",
                     "videos per class, >= 4 (default: 12)",
                     "frames per video (default: 150)", "(default: 25.0)"):
        assert fragment in text, fragment


# --------------------------------------------------------------------------------------------
# The names a config field accepts are the names the code that builds them knows
# --------------------------------------------------------------------------------------------

def _registries() -> dict[str, tuple]:
    """leaf field -> the names of the registry (or name list) that builds or checks its value."""
    import models  # noqa: F401  (registers the backbones)
    from dataloaders.color import COLOR_OPS
    from dataloaders.datasets import AUGMENT_PLACES
    from dataloaders.splits import DATASETS
    from dataloaders.synthetic import DESIGNS
    from dataloaders.video import COLORS
    from engine.classify_report import SELECT_LABELS
    from engine.schedules import CLASSIFIER_LR_RULES
    from models.registry import BACKBONES
    return {"backbone": tuple(BACKBONES), "dataset": tuple(DATASETS),
            "synthetic_design": tuple(DESIGNS), "color_ops": COLOR_OPS, "color": COLORS,
            "augment_on": AUGMENT_PLACES, "lr_rule": CLASSIFIER_LR_RULES,
            "select": tuple(SELECT_LABELS)}


@pytest.mark.parametrize("name", ["backbone", "dataset", "synthetic_design", "color_ops", "color",
                                  "augment_on", "lr_rule", "select"])
def test_config_choices_are_the_registries_names(name):
    registry = _registries()[name]
    for job, cls in config.JOBS.items():
        leaves = config.leaf_fields(cls)
        if name in leaves:
            assert set(leaves[name][1].metadata["choices"]) == set(registry), (job, name)


def test_loss_weight_fields_are_the_objectives_terms():
    """One w_<term> field per loss term, in the objective's order (losses.TERM_NAMES)."""
    import losses
    weights = [n for n in config.leaf_fields(config.PretrainConfig) if n.startswith("w_")]
    assert weights == ["w_" + term for term in losses.TERM_NAMES]
    assert config.LOSS_TERMS == losses.TERM_NAMES
    cfg, _ = parse_config("pretrain", ["--w-local-local", "0.5"])
    assert config.loss_weights(cfg) == {**dict.fromkeys(losses.TERM_NAMES, 1.0), "local_local": 0.5}


@pytest.mark.parametrize("argv, fragment", [
    (["--w-ic-global", "-1"], "config keys 'w_*': loss weight 'ic_global' must be finite and >= 0"),
    (["--w-ic-global", "0", "--w-ic-local", "0", "--w-local-local", "0", "--w-global-local", "0"],
     "config keys 'w_*': all loss weights are 0"),
])
def test_loss_weights_are_checked_by_the_objectives_rule(argv, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config("pretrain", argv)
    assert fragment in str(info.value)


def _flag_help(text: str, flag: str) -> str:
    """The help text of one flag in a --help page, on one line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(flag + " "))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if line.lstrip().startswith("-") or not line.startswith(" " * 10):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def test_every_preset_is_described_in_every_jobs_help():
    for name in config.PRESETS:
        assert config.PRESET_HELP.get(name, "").strip(), f"preset {name!r} has no description"
    for job in config.JOBS:
        epilog = _help(job).split("presets (--preset NAME", 1)[1]
        for name in config.PRESETS:
            line = next(line for line in epilog.splitlines() if line.startswith(f"  {name} "))
            assert line[len(name) + 2:].strip(), f"{job} --help: preset {name} is blank"


def test_help_speaks_of_each_jobs_own_use():
    pretrain, linear, finetune = _help("pretrain"), _help("linear"), _help("finetune")
    # evaluation-only flags are not in pretraining's help, but still accepted there
    for flag in ("--train-stride", "--eval-crop", "--eval-flip"):
        assert flag not in pretrain and flag in linear and flag in finetune, flag
    assert parse_config("pretrain", ["--eval-crop", "0.9"])[0].data.eval_crop == 0.9
    assert "--train-stride" in _help("pretrain", show_all=True)
    # the classifiers' --drop-last speaks of their clips, not of pretraining steps
    for text in (linear, finetune):
        drop = _flag_help(text, "--drop-last")
        assert "clips" in drop and "pretraining" not in drop, drop
        out_dir = _flag_help(text, "--out-dir")
        for name in ("results.json", "per_class_accuracy.csv", "confusion_matrix", "checkpoints/"):
            assert name in out_dir, (name, out_dir)
    assert "pretraining steps" in _flag_help(pretrain, "--drop-last")
    assert "checkpoints/" in _flag_help(pretrain, "--out-dir")
    assert "results.json" in _flag_help(_help("retrieval"), "--out-dir")
    assert f"at least {config.MIN_RESOLUTION}" in _flag_help(pretrain, "--resolution")


@pytest.mark.parametrize("resolution", [1, 8, 15])
def test_a_resolution_below_the_stated_minimum_is_refused(resolution):
    with pytest.raises(ConfigError, match=f"'resolution': {resolution} is too small: the minimum "
                                          f"is {config.MIN_RESOLUTION} pixels"):
        parse_config("pretrain", ["--resolution", str(resolution)])


@pytest.mark.parametrize("backbone", config.BACKBONE_NAMES)
def test_every_backbone_runs_at_the_minimum_resolution(backbone):
    import torch
    from models.registry import build_backbone
    model = build_backbone(backbone, width=4).eval()
    cfg, _ = parse_config("pretrain", ["--resolution", str(config.MIN_RESOLUTION),
                                       "--backbone", backbone])
    side = cfg.data.resolution
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 16, side, side))         # [1, 8 * width, 4]
    assert out.shape == (1, 32, 4)
