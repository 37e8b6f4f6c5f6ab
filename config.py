"""Typed configuration for every job of this project.

One dataclass per job (pretraining, linear evaluation, finetuning, retrieval), each holding a
shared :class:`DataConfig` under ``data``. Defaults are the paper's / the release's values
(TCLR_SPEC sections 6-7); each field carries its help text, which is also its ``--help`` line.

Values are resolved in this order, later winning:
    dataclass defaults < preset (``--preset NAME``) < config file (``--config FILE``) < command line.

Every leaf field is reachable from the command line as ``--field-name`` (underscores become dashes);
field names are unique across a job's tree, so ``--data-root`` sets ``cfg.data.data_root``.
Config files (YAML or JSON) may be flat (``{"lr": 0.01}``) or nested (``{"data": {"split": 2}}``).
Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the key and the
nearest valid ones. :func:`finalize` holds all validation and every derived value.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from user_errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem the user can fix: bad key, type or value."""


def F(default: Any, help: str, *, choices: tuple | None = None, derived: bool = False):
    """A dataclass field with its help text (and optionally allowed values / derived flag)."""
    meta = {"help": help, "choices": choices, "derived": derived}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


DATASETS = ("ucf101", "hmdb51", "kinetics400", "folder", "synthetic")
BACKBONE_NAMES = ("r3d18", "r2plus1d18", "c3d")
LOSS_TERMS = ("ic_global", "ic_local", "local_local", "global_local")


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them (TCLR_SPEC sections 1, 2, 7, 8)."""

    dataset: str = F("ucf101", "dataset reader", choices=DATASETS)
    data_root: str = F("", "dataset root (UCF101: folder holding UCF-101/ and ucfTrainTestlist/); "
                           "empty = data/<dataset>")
    split: int = F(1, "official split (1, 2 or 3)")
    clip_len: int = F(16, "frames per clip (T); must be a multiple of 4")
    sparse_stride: int = F(4, "frame stride of the global (sparse) pretraining clip")
    num_local: int = F(0, "local (dense) clips per sample: clip_len / 4", derived=True)
    train_stride: int = F(2, "frame stride of classifier training/test clips ('fixed skip')")
    resolution: int = F(112, "side of the square network input in pixels")
    color: str = F("bgr", "channel order fed to the network (the release's weights expect BGR)",
                   choices=("bgr", "rgb"))
    color_ops: str = F("release", "channels the colour augmentation's formulas (grayscale weights, "
                                  "hue, saturation/contrast grey) take as R, G, B: 'release' = the "
                                  "stored channels in order, as the release's PIL calls on BGR "
                                  "arrays; 'true_channels' = the real R, G, B of --color",
                       choices=("release", "true_channels"))
    num_workers: int = F(8, "DataLoader worker processes per training process")
    augment_on: str = F("cpu", "where pretraining augmentation runs: 'cpu' (DataLoader workers) or "
                               "'device' (batched on the training device)",
                        choices=("cpu", "device"))
    eval_crop: float = F(0.8, "evaluation clips (test, validation, retrieval features): side of "
                              "the centre square as a fraction of the frame height (the release)")
    eval_flip: bool = F(False, "evaluation clips: flip them horizontally (the release: no)")
    max_bad_fraction: float = F(0.25, "stop when more than this fraction of one batch's videos "
                                      "failed to decode (failures are skipped and reported)")
    synthetic_classes: int = F(10, "synthetic dataset: number of classes (generated if absent)")
    synthetic_videos_per_class: int = F(12, "synthetic dataset: videos per class")
    synthetic_frames: int = F(150, "synthetic dataset: frames per video")
    synthetic_width: int = F(320, "synthetic dataset: frame width in pixels")
    synthetic_height: int = F(240, "synthetic dataset: frame height in pixels")
    synthetic_design: str = F("varied", "synthetic dataset: 'varied' (appearance varies within every "
                                        "class) or 'trajectory' (one look for every video; classes "
                                        "differ only in a square's path)",
                              choices=("varied", "trajectory"))


@dataclass
class RunConfig:
    """Fields every job shares: model choice, run folder, seed, device."""

    data: DataConfig = field(default_factory=DataConfig)
    preset: str = F("", "name of the preset these values started from (informational)")
    backbone: str = F("r3d18", "backbone architecture", choices=BACKBONE_NAMES)
    width: int = F(64, "base channel width of the backbone (64 = paper; smaller for CPU tests)")
    epochs: int = F(100, "training epochs")
    batch_size: int = F(40, "global batch size in videos, shared by all processes")
    per_device_batch: int = F(0, "batch per process: batch_size / world size", derived=True)
    out_dir: str = F("runs/job", "run folder: config, checkpoints, logs, results")
    seed: int = F(0, "random seed for sampling, augmentation and initialisation")
    device: str = F("auto", "'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'")
    amp: str = F("auto", "mixed precision: 'auto' (fp16 + grad scaler on CUDA as the release, "
                         "float32 on CPU), 'fp16', 'bf16' or 'off'",
                 choices=("auto", "fp16", "bf16", "off"))
    drop_last: bool = F(False, "training: drop each epoch's last partial batch. One process keeps "
                               "it by default, as the release (239 pretraining steps per epoch on "
                               "UCF101 split 1, the last of 17 videos; a last pretraining batch of "
                               "one video is dropped); under torchrun it is always dropped")
    max_steps_per_epoch: int = F(0, "stop each epoch after this many steps (0 = full epoch); "
                                    "for smoke tests and demos")
    log_every_steps: int = F(10, "TensorBoard scalar interval in steps")
    progress: bool = F(True, "show tqdm progress bars on rank 0")
    dist_timeout_s: float = F(600.0, "multi-process runs: seconds a process waits for the others in "
                                     "a collective; a dead or hung peer then ends the job with an "
                                     "error instead of a hang")


@dataclass
class PretrainConfig(RunConfig):
    """TCLR pretraining (TCLR_SPEC sections 1-6)."""

    epochs: int = F(300, "pretraining epochs (the release ran until stopped; our fixed budget)")
    out_dir: str = F("runs/pretrain", "run folder: config, checkpoints, logs")
    proj_dim: int = F(128, "output dimension of the projection head")
    lr: float = F(1e-3, "Adam learning rate")
    weight_decay: float = F(1e-9, "Adam weight decay")
    schedule: str = F("release", "'release': warm-up then /10 after a loss plateau; "
                                 "'cosine': warm-up then cosine decay over the epochs",
                      choices=("release", "cosine"))
    warmup_factors: tuple = F((0.01, 0.05, 0.1, 0.5, 1.0), "lr multipliers of the first epochs")
    plateau_patience: int = F(9, "release schedule: epochs without loss improvement before lr /10")
    plateau_factor: float = F(0.1, "release schedule: lr multiplier applied on a plateau")
    temperature: float = F(0.1, "softmax temperature of every contrastive loss")
    w_ic_global: float = F(1.0, "weight of the instance loss on global clips (0 drops it)")
    w_ic_local: float = F(1.0, "weight of the instance loss on local clips (0 drops it)")
    w_local_local: float = F(1.0, "weight of the local-local loss (0 drops it)")
    w_global_local: float = F(1.0, "weight of the global-local loss (0 drops it)")
    fused_forward: bool = F(False, "one backbone pass over all 10 clip groups (BatchNorm statistics "
                                   "over all clips) instead of the release's 10 passes")
    channels_last: bool = F(False, "channels_last_3d memory format (faster 3D convolutions with "
                                   "cuDNN and with oneDNN on the CPU)")
    compile: bool = F(False, "torch.compile the model")
    sync_bn: bool = F(False, "convert BatchNorm to SyncBatchNorm under DDP")
    grad_checkpoint: bool = F(False, "activation checkpointing of the backbone stages (saves memory)")
    resume: str = F("", "'auto' (latest checkpoint in out_dir if any) or a checkpoint path")
    overwrite: bool = F(False, "replace the earlier run in out_dir (its checkpoints, logs and "
                               "config) instead of refusing to start; --resume continues it instead")
    save_every_epochs: int = F(5, "also keep checkpoints/epoch_NNNN.pth every N epochs (0 = never)")
    save_every_steps: int = F(0, "also refresh checkpoints/latest.pth every N steps (0 = per epoch)")


@dataclass
class ClassifyConfig(RunConfig):
    """Shared fields of linear evaluation and finetuning (TCLR_SPEC section 7)."""

    checkpoint: str = F("", "backbone weights to start from (empty = random initialisation)")
    trust_checkpoint: bool = F(False, "allow unpickling a checkpoint with Python objects (the release's "
                                      "files); only for files you trust")
    batch_size: int = F(32, "global batch size in clips")
    lr: float = F(1e-2, "Adam learning rate")
    weight_decay: float = F(0.0, "Adam weight decay")
    plateau_patience: int = F(3, "epochs whose training loss is above the best before lr /10 "
                                 "(see lr_rule)")
    lr_rule: str = F("release", "'release': the release's counter of epochs above the best loss, "
                                "not reset by an improvement; stop after the first epoch trained "
                                "below min_lr. 'consecutive': patience epochs in a row without "
                                "improvement; stop before an lr below min_lr",
                     choices=("release", "consecutive"))
    min_lr: float = F(1e-5, "stop training once the learning rate falls below this (see lr_rule)")
    num_test_clips: int = F(10, "clips per test video; softmax averaged over them")
    val_fraction: float = F(0.1, "fraction of the train split held out (stratified, seeded) for "
                                 "model selection; 0 = report the last epoch")
    select: str = F("val", "model selection: 'val' (held-out train videos), 'last' (last epoch) or "
                           "'best_test' (the release's choice: best test accuracy, optimistic)",
                    choices=("val", "last", "best_test"))
    label_fraction: float = F(1.0, "fraction of labelled train videos used, stratified per class")
    eval_every_epochs: int = F(1, "evaluate on the validation videos every N epochs")
    val_clips: int = F(0, "clips per validation video (0 = num_test_clips: the test protocol)")
    eval_batch_size: int = F(0, "videos per evaluation batch per process (0 = per-process batch "
                                "divided by the clips per video, at least 1)")


@dataclass
class LinearConfig(ClassifyConfig):
    """Linear evaluation: frozen backbone, one Linear layer on time/space-pooled features."""

    out_dir: str = F("runs/linear", "run folder")
    amp: str = F("off", "precision: 'off' (float32, as the release's linear evaluation, the "
                        "default), or mixed precision 'auto' / 'fp16' (fp16 + grad scaler on CUDA) "
                        "or 'bf16'; CPU always runs float32",
                 choices=("auto", "fp16", "bf16", "off"))
    bn_mode: str = F("frozen", "'frozen': backbone BatchNorm in eval mode (default); 'train': the "
                               "release's behaviour, running statistics keep updating",
                     choices=("frozen", "train"))


@dataclass
class FinetuneConfig(ClassifyConfig):
    """Full finetuning: every layer trains (lr 1e-4 Adam: our documented starting point)."""

    out_dir: str = F("runs/finetune", "run folder")
    lr: float = F(1e-4, "Adam learning rate (the release has no finetuning script; our choice)")
    dropout: float = F(0.0, "dropout before the classifier")


@dataclass
class RetrievalConfig(RunConfig):
    """Nearest-neighbour retrieval: test videos query the train gallery (TCLR_SPEC section 7)."""

    out_dir: str = F("runs/retrieval", "run folder")
    amp: str = F("off", "precision of feature extraction: 'off' (float32, as the release's "
                        "retrieval, the default), or autocast 'auto' / 'fp16' or 'bf16' on CUDA",
                 choices=("auto", "fp16", "bf16", "off"))
    checkpoint: str = F("", "backbone weights (empty = random initialisation)")
    trust_checkpoint: bool = F(False, "allow unpickling a checkpoint with Python objects (the release's "
                                      "files); only for files you trust")
    epochs: int = F(0, "unused by retrieval", derived=True)
    batch_size: int = F(8, "videos per feature-extraction batch")
    num_clips: int = F(9, "clips per video; features averaged over them")
    ks: tuple = F((1, 5, 10, 20, 50), "k values of Recall@k")
    cache_dir: str = F("", "feature cache folder (empty = <out_dir>/features)")
    num_grid_queries: int = F(8, "queries shown in the retrieval picture grid")
    grid_topk: int = F(5, "nearest gallery videos shown per query in the picture grid")
    embedding_points: int = F(1000, "test videos sent to TensorBoard's embedding projector "
                                    "(evenly subsampled; 0 = none)")


JOBS: dict[str, type] = {
    "pretrain": PretrainConfig,
    "linear": LinearConfig,
    "finetune": FinetuneConfig,
    "retrieval": RetrievalConfig,
}

# Presets: flat key -> value. Keys a job does not have are skipped for that job, so one preset
# can serve pretraining and evaluation alike.
_PAPER_UCF = {"dataset": "ucf101", "split": 1, "width": 64, "resolution": 112}
PRESETS: dict[str, dict[str, Any]] = {
    "ucf101_r3d18": {**_PAPER_UCF, "backbone": "r3d18"},
    "ucf101_r2plus1d18": {**_PAPER_UCF, "backbone": "r2plus1d18"},
    "ucf101_c3d": {**_PAPER_UCF, "backbone": "c3d"},
    "k400_r3d18": {**_PAPER_UCF, "dataset": "kinetics400", "backbone": "r3d18"},
    "k400_r2plus1d18": {**_PAPER_UCF, "dataset": "kinetics400", "backbone": "r2plus1d18"},
    # CPU-sized: a narrow R3D-18 on small synthetic videos (TCLR_SPEC section 11's sizing hint).
    "demo": {
        "dataset": "synthetic", "data_root": "data/synthetic_demo", "backbone": "r3d18",
        "width": 16, "resolution": 32, "num_workers": 2, "amp": "off", "batch_size": 10,
        "channels_last": True, "warmup_factors": (0.1, 0.5, 1.0),
        "synthetic_classes": 6, "synthetic_videos_per_class": 30, "synthetic_frames": 96,
        "synthetic_width": 64, "synthetic_height": 48,
    },
    # The learning demo (scripts/learning_demo.sh): a width-8 R3D-18 at 24 px (about 2 s per step
    # of 20 videos on one core) on the "trajectory" design, enough videos for 324 test queries
    # (README "Demo and mini ablation").
    "learning": {
        "dataset": "synthetic", "data_root": "data/synthetic_trajectory", "backbone": "r3d18",
        "width": 8, "resolution": 24, "num_workers": 2, "amp": "off", "batch_size": 20,
        "channels_last": True, "warmup_factors": (0.1, 0.5, 1.0),
        "synthetic_design": "trajectory", "synthetic_classes": 6, "synthetic_videos_per_class": 180,
        "synthetic_frames": 96, "synthetic_width": 64, "synthetic_height": 48,
    },
}
# The linear probe of the CPU demos (demo.sh, mini_ablation.sh): the last epoch, no held-out videos,
# 3 test clips, and BatchNorm statistics that keep updating (the release's protocol; frozen
# statistics would judge a random backbone with its uncalibrated initial ones).
DEMO_LINEAR_PROBE = {"bn_mode": "train", "select": "last", "val_fraction": 0.0, "num_test_clips": 3}
PRESETS["demo_linear"] = {**PRESETS["demo"], **DEMO_LINEAR_PROBE}


# --------------------------------------------------------------------------------------------
# Flattening: leaf name -> (path of attribute names, dataclasses.Field)
# --------------------------------------------------------------------------------------------

def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def leaf_fields(cls: type) -> dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Map every leaf field name of a job config class to (attribute path, Field, type)."""
    out: dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]] = {}
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for name, (path, sub, sub_tp) in leaf_fields(tp).items():
                out[name] = ((f.name,) + path, sub, sub_tp)
        else:
            if f.name in out:
                raise RuntimeError(f"duplicate config field name {f.name!r} in {cls.__name__}")
            out[f.name] = ((f.name,), f, tp)
    return out


def _nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def _coerce(key: str, value: Any, tp: Any, from_string: bool) -> Any:
    """Check/convert ``value`` to the field type ``tp``; raise ConfigError naming ``key``."""
    def bad(expected: str):
        return ConfigError(f"config key {key!r}: expected {expected}, got {value!r}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise bad("a boolean (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad("an integer") from None
        raise bad("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # also from a file: YAML 1.1 (PyYAML) reads 1e-3, without a dot, as the string "1e-3"
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        raise bad("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if tp is tuple:
        if from_string and isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
            value = parts
        if isinstance(value, (list, tuple)):
            items = []
            for item in value:
                if isinstance(item, str):
                    try:
                        item = float(item) if any(c in item for c in ".eE") else int(item)
                    except ValueError:
                        raise bad("a comma-separated list of numbers") from None
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise bad("a list of numbers")
                items.append(item)
            return tuple(items)
        raise bad("a list of numbers")
    raise RuntimeError(f"unsupported config type {tp!r} for {key!r}")


def _set(cfg: Any, path: tuple[str, ...], value: Any) -> None:
    obj = cfg
    for name in path[:-1]:
        obj = getattr(obj, name)
    setattr(obj, path[-1], value)


def _get(cfg: Any, path: tuple[str, ...]) -> Any:
    obj = cfg
    for name in path:
        obj = getattr(obj, name)
    return obj


def apply_overrides(cfg: Any, values: dict[str, Any], *, source: str, from_string: bool = False,
                    skip_unknown: bool = False) -> None:
    """Set leaf fields of ``cfg`` from a flat or nested mapping, checking keys and types."""
    leaves = leaf_fields(type(cfg))
    for key, value in _flatten_mapping(values, source).items():
        norm = key.replace("-", "_")
        if norm not in leaves:
            if skip_unknown:
                continue
            raise ConfigError(f"{source}: unknown config key {key!r}{_nearest(norm, leaves)}")
        path, f, tp = leaves[norm]
        if f.metadata.get("derived"):
            if skip_unknown:
                continue
            raise ConfigError(f"{source}: {key!r} is derived ({f.metadata['help']}); "
                              "set the fields it comes from instead")
        _set(cfg, path, _coerce(norm, value, tp, from_string))


_SECTIONS = ("data",)


def _flatten_mapping(values: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SECTIONS and isinstance(value, dict):
            flat.update(_flatten_mapping(value, source))
        else:
            flat[key] = value
    return flat


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file into a mapping."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--config {p} is a directory, not a config file (a run folder's is "
                          f"{p / 'config.yaml'})")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                          f"{exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping of keys to values at the top level")
    return data


def _refuse_other_job(path: str, job: str) -> None:
    """A run folder's config.yaml (save_config's header names its class) given to another job."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    match = re.match(r"# Resolved (\w+)\.", first)
    if not match:
        return
    writers = {cls.__name__: name for name, cls in JOBS.items()}
    writer = writers.get(match.group(1))
    if writer is not None and writer != job:
        raise ConfigError(f"--config {path} was written by a {writer} job (it is that run's "
                          f"config.yaml), but this is the {job} job, whose settings differ; pass "
                          f"a {job} config or the flags themselves")


def apply_preset(cfg: Any, name: str) -> None:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    apply_overrides(cfg, PRESETS[name], source=f"preset {name}", skip_unknown=True)
    cfg.preset = name


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

# --help: what a preset is for (PRESETS holds its values).
PRESET_HELP: dict[str, str] = {
    "ucf101_r3d18": "the paper's UCF101 setting (split 1, 112 px, full width) with R3D-18",
    "ucf101_r2plus1d18": "the paper's UCF101 setting with R(2+1)D-18",
    "ucf101_c3d": "the paper's UCF101 setting with C3D",
    "k400_r3d18": "Kinetics-400 pretraining with R3D-18 (112 px, full width)",
    "k400_r2plus1d18": "Kinetics-400 pretraining with R(2+1)D-18",
    "demo": "CPU-sized: a narrow R3D-18 (width 16, 32 px) on small generated synthetic videos "
            "(6 classes x 30 videos; scripts/demo.sh)",
}

# --help sections, in order; a field's section is looked up in _SECTION_OF, else DataConfig's
# fields are "data" and the rest "runtime".
HELP_SECTIONS: dict[str, str] = {
    "data": "which videos, and how clips are cut from them",
    "model": "the network and the weights it starts from",
    "optimisation": "optimiser, schedule, batch and length of training",
    "loss": "the TCLR objective (TCLR_SPEC sections 3-5)",
    "evaluation": "evaluation protocol, model selection and pictures",
    "runtime": "run folder, device, precision, logging, checkpoints",
}
_SECTION_OF: dict[str, str] = {
    **{name: "model" for name in ("backbone", "width", "proj_dim", "fused_forward", "checkpoint",
                                  "trust_checkpoint", "bn_mode", "dropout")},
    **{name: "optimisation" for name in ("epochs", "batch_size", "lr", "weight_decay", "schedule",
                                         "warmup_factors", "plateau_patience", "plateau_factor",
                                         "min_lr", "lr_rule", "max_steps_per_epoch", "drop_last")},
    **{name: "loss" for name in ("temperature", "w_ic_global", "w_ic_local", "w_local_local",
                                 "w_global_local")},
    **{name: "evaluation" for name in ("num_test_clips", "val_fraction", "select",
                                       "label_fraction", "eval_every_epochs", "val_clips",
                                       "eval_batch_size", "num_clips", "ks", "cache_dir",
                                       "num_grid_queries", "grid_topk", "embedding_points")},
}
# Fields a job carries (the shared DataConfig/RunConfig) but does not use: still accepted (a preset
# or a config file written by another job may set them), left out of that job's --help. The
# synthetic generator's sizes are listed under pretraining, the job that normally generates the
# data; the other jobs accept them too (--help-all shows every accepted flag).
_SYNTHETIC = ("synthetic_classes", "synthetic_videos_per_class", "synthetic_frames",
              "synthetic_width", "synthetic_height")
_NOT_USED_BY: dict[str, tuple[str, ...]] = {
    "pretrain": (),
    "linear": ("sparse_stride", "augment_on", "log_every_steps") + _SYNTHETIC,
    "finetune": ("sparse_stride", "augment_on", "log_every_steps") + _SYNTHETIC,
    "retrieval": ("sparse_stride", "augment_on", "color_ops", "log_every_steps",
                  "max_steps_per_epoch", "max_bad_fraction", "drop_last") + _SYNTHETIC,
}


def help_section(name: str, job: str = "") -> str:
    """The --help section of a leaf field name (one of HELP_SECTIONS)."""
    if job == "retrieval" and name == "batch_size":
        return "evaluation"          # retrieval trains nothing: its batch is feature extraction
    if name in _SECTION_OF:
        return _SECTION_OF[name]
    return "data" if name in {f.name for f in dataclasses.fields(DataConfig)} else "runtime"


def job_flags(job: str) -> list[str]:
    """The leaf fields a job's --help shows: settable (not derived) and used by the job."""
    return [name for name, (_p, f, _t) in leaf_fields(JOBS[job]).items()
            if not f.metadata.get("derived") and name != "preset"
            and name not in _NOT_USED_BY.get(job, ())]


def _presets_epilog(job: str) -> str:
    import textwrap
    shown = set(job_flags(job))
    lines = ["presets (--preset NAME; a config file and flags override its values):"]
    for name in sorted(PRESETS):
        values = ", ".join(f"{k}={v}" for k, v in PRESETS[name].items() if k in shown)
        lines.append(f"  {name:18s} " + "\n  ".join(textwrap.wrap(
            PRESET_HELP.get(name, ""), 78, subsequent_indent=" " * 19)))
        lines.append("\n".join(textwrap.wrap(f"[{values}]", 78, initial_indent=" " * 21,
                                             subsequent_indent=" " * 22)))
    lines.append("\nvalues resolve as: defaults < preset < config file < flags; --print-config "
                 "shows each value\nand where it came from")
    return "\n".join(lines)


class _HelpAll(argparse.Action):
    """--help-all: the help with every accepted flag, also those the job does not use."""

    def __init__(self, option_strings, dest, job: str, description: str | None, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.job, self.description = job, description

    def __call__(self, parser, namespace, values, option_string=None):
        build_parser(self.job, self.description, show_all=True).print_help()
        parser.exit()


def build_parser(job: str, description: str | None = None,
                 show_all: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with one flag per leaf field of the job's config (values stay strings).

    The help lists the flags by section (HELP_SECTIONS) and only those the job uses; the others
    are accepted silently (``show_all`` lists them too, as ``--help-all`` does). The presets are
    listed with what they are for and their values.
    """
    cls = JOBS[job]
    parser = argparse.ArgumentParser(
        description=description or cls.__doc__, epilog=_presets_epilog(job),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", help="YAML or JSON config file")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config, each value with its source, and exit")
    parser.add_argument("--help-all", action=_HelpAll, job=job, description=description,
                        help="show every accepted flag, also those this job does not use")
    parser.add_argument("--preset", default=argparse.SUPPRESS,
                        help=f"named preset: {', '.join(sorted(PRESETS))} (listed below)")
    defaults = cls()
    shown = set(job_flags(job))
    flags = [(name, path, f, tp) for name, (path, f, tp) in leaf_fields(cls).items()
             if not f.metadata.get("derived") and name != "preset"]
    sections = {help_section(name, job) for name, *_ in flags if show_all or name in shown}
    # argparse prints groups in creation order: create the job's non-empty sections first, in the
    # HELP_SECTIONS order; a group of only unused flags is created after them and prints nothing
    groups = {name: parser.add_argument_group(name, text) for name, text in HELP_SECTIONS.items()
              if name in sections}
    for name, path, f, tp in flags:
        choices = f.metadata.get("choices")
        help_text = f.metadata.get("help", "")
        if choices:
            help_text += f" {{{'|'.join(str(c) for c in choices)}}}"
        default = _get(defaults, path)
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        visible = show_all or name in shown
        section = help_section(name, job)
        if section not in groups:
            groups[section] = parser.add_argument_group()
        groups[section].add_argument(
            "--" + name.replace("_", "-"), dest=name,
            metavar="LIST" if tp is tuple else tp.__name__.upper(),
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {default!r})" if visible else argparse.SUPPRESS)
    return parser


def parse_config(job: str, argv: list[str] | None = None, *, world_size: int = 1,
                 finalize_config: bool = True):
    """Parse the command line of a job into a resolved config.

    Returns:
        (cfg, args): the config dataclass and argparse namespace (for --print-config).
    Raises:
        ConfigError: for unknown flags/keys, wrong types or impossible values.
    """
    parser = build_parser(job)
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("--")]
        known = [o for o in parser._option_string_actions if o.startswith("--")]
        if flags:
            bad = flags[0].split("=")[0]
            leaf = leaf_fields(JOBS[job]).get(bad[2:].replace("-", "_"))
            if leaf and leaf[1].metadata.get("derived"):
                raise ConfigError(f"option {bad} is derived ({leaf[1].metadata['help']}) and "
                                  "cannot be set")
            raise ConfigError(f"unknown option {bad}{_nearest(bad, known)}")
        raise ConfigError(f"unexpected argument {unknown[0]!r} (options look like --key value)")
    cfg = JOBS[job]()
    file_values = load_config_file(args.config) if args.config else {}
    if args.config:
        _refuse_other_job(args.config, job)
    preset = getattr(args, "preset", None) or file_values.get("preset") or ""
    if preset:
        apply_preset(cfg, preset)
    if file_values:
        apply_overrides(cfg, {k: v for k, v in file_values.items() if k != "preset"},
                        source=f"config file {args.config}")
    cli = {k: v for k, v in vars(args).items() if k not in ("config", "print_config", "preset")}
    apply_overrides(cfg, cli, source="command line", from_string=True)
    if finalize_config:
        cfg = finalize(cfg, world_size=world_size)
    return cfg, args


# --------------------------------------------------------------------------------------------
# Validation and derived values: the one place
# --------------------------------------------------------------------------------------------

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def finalize(cfg: Any, world_size: int = 1):
    """Validate ``cfg`` and fill its derived fields. Returns the same object.

    Args:
        cfg: a job config (PretrainConfig, LinearConfig, FinetuneConfig or RetrievalConfig).
        world_size: number of training processes sharing the global batch.
    """
    leaves = leaf_fields(type(cfg))
    for name, (path, f, _tp) in leaves.items():
        choices = f.metadata.get("choices")
        if choices and _get(cfg, path) not in choices:
            raise ConfigError(f"config key {name!r}: {_get(cfg, path)!r} is not one of "
                              f"{', '.join(map(str, choices))}")
    _require_finite(cfg, leaves)
    _expand_user_paths(cfg, leaves)
    d = cfg.data
    _require(d.split in (1, 2, 3), f"config key 'split': {d.split} is not 1, 2 or 3")
    _require(d.clip_len >= 4 and d.clip_len % 4 == 0,
             f"config key 'clip_len': {d.clip_len} must be a positive multiple of 4 (the backbones "
             "reduce time by 4, and each feature-map timestep pairs with one local clip)")
    d.num_local = d.clip_len // 4
    for key in ("sparse_stride", "train_stride", "resolution"):
        _require(getattr(d, key) >= 1, f"config key {key!r}: must be >= 1, got {getattr(d, key)}")
    _require(d.resolution % 8 == 0 or d.resolution >= 16,
             f"config key 'resolution': {d.resolution} is too small for the backbones (>= 16)")
    _require(d.num_workers >= 0, f"config key 'num_workers': must be >= 0, got {d.num_workers}")
    _require(0.0 <= d.max_bad_fraction <= 1.0,
             f"config key 'max_bad_fraction': must be within [0, 1], got {d.max_bad_fraction}")
    _require(0.0 < d.eval_crop <= 1.0,
             f"config key 'eval_crop': must be within (0, 1], got {d.eval_crop}")
    if not d.data_root:
        d.data_root = os.path.join("data", d.dataset)
    _require(cfg.width >= 4 and cfg.width % 4 == 0,
             f"config key 'width': {cfg.width} must be a positive multiple of 4")
    _require(cfg.batch_size >= 1, f"config key 'batch_size': must be >= 1, got {cfg.batch_size}")
    _require(cfg.batch_size >= world_size,
             f"config key 'batch_size': the global batch {cfg.batch_size} is smaller than the "
             f"{world_size} processes sharing it")
    _require(cfg.batch_size % world_size == 0,
             f"config key 'batch_size': the global batch {cfg.batch_size} does not divide among "
             f"{world_size} processes; use a multiple of {world_size}")
    cfg.per_device_batch = cfg.batch_size // world_size
    _require(cfg.epochs >= 0, f"config key 'epochs': must be >= 0, got {cfg.epochs}")
    _require(cfg.seed >= 0, f"config key 'seed': must be >= 0, got {cfg.seed}")
    _require(cfg.max_steps_per_epoch >= 0, "config key 'max_steps_per_epoch': must be >= 0")
    _require(cfg.dist_timeout_s > 0,
             f"config key 'dist_timeout_s': must be > 0 seconds, got {cfg.dist_timeout_s}")
    dev = cfg.device
    _require(dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
             f"config key 'device': {dev!r} is not auto, cpu, cuda or cuda:N")
    if isinstance(cfg, PretrainConfig):
        _finalize_pretrain(cfg)
    if isinstance(cfg, ClassifyConfig):
        _finalize_classify(cfg)
    if isinstance(cfg, RetrievalConfig):
        _require(cfg.num_clips >= 1, "config key 'num_clips': must be >= 1")
        _require(len(cfg.ks) > 0 and all(isinstance(k, int) and k >= 1 for k in cfg.ks),
                 f"config key 'ks': expected positive integers, got {cfg.ks}")
        _require(cfg.grid_topk >= 1, "config key 'grid_topk': must be >= 1")
        _require(cfg.num_grid_queries >= 0, "config key 'num_grid_queries': must be >= 0")
        _require(cfg.embedding_points >= 0, "config key 'embedding_points': must be >= 0")
    return cfg


# Path settings whose "~" is expanded as the shell would (a config file's values never see a shell)
PATH_KEYS = ("data_root", "out_dir", "checkpoint", "resume", "cache_dir")


def _expand_user_paths(cfg: Any, leaves: dict) -> None:
    for key in PATH_KEYS:
        if key in leaves:
            value = _get(cfg, leaves[key][0])
            if value.startswith("~"):
                _set(cfg, leaves[key][0], os.path.expanduser(value))


def _require_finite(cfg: Any, leaves: dict) -> None:
    """Every float setting (and every number of a list setting) is finite: inf or nan in, say,
    lr would train to non-finite weights."""
    for name, (path, _f, tp) in leaves.items():
        value = _get(cfg, path)
        values = value if tp is tuple else (value,) if tp is float else ()
        for v in values:
            _require(math.isfinite(v), f"config key {name!r}: must be a finite number, got {v}")


def _finalize_pretrain(cfg: PretrainConfig) -> None:
    _require(cfg.proj_dim >= 1, f"config key 'proj_dim': must be >= 1, got {cfg.proj_dim}")
    _require(not (cfg.overwrite and cfg.resume), "config keys 'resume' and 'overwrite': --resume "
             "continues the earlier run, --overwrite replaces it; pass one of them")
    _require(cfg.lr > 0, f"config key 'lr': must be > 0, got {cfg.lr}")
    _require(cfg.temperature > 0, f"config key 'temperature': must be > 0, got {cfg.temperature}")
    _require(len(cfg.warmup_factors) > 0 and all(f > 0 for f in cfg.warmup_factors),
             f"config key 'warmup_factors': expected positive numbers, got {cfg.warmup_factors}")
    weights = loss_weights(cfg)
    _require(all(w >= 0 for w in weights.values()), f"loss weights must be >= 0, got {weights}")
    _require(any(w > 0 for w in weights.values()), "all four loss weights are 0: nothing to train")
    _require(cfg.plateau_patience >= 1, "config key 'plateau_patience': must be >= 1")
    _require(cfg.batch_size >= 2 or cfg.w_ic_global == 0,
             "config key 'batch_size': instance contrast needs at least 2 videos per batch")


def _finalize_classify(cfg: ClassifyConfig) -> None:
    _require(cfg.lr > 0, f"config key 'lr': must be > 0, got {cfg.lr}")
    _require(0.0 <= cfg.val_fraction < 1.0,
             f"config key 'val_fraction': must be within [0, 1), got {cfg.val_fraction}")
    _require(0.0 < cfg.label_fraction <= 1.0,
             f"config key 'label_fraction': must be within (0, 1], got {cfg.label_fraction}")
    _require(cfg.num_test_clips >= 1, "config key 'num_test_clips': must be >= 1")
    _require(not (cfg.select == "val" and cfg.val_fraction == 0),
             "config key 'select': 'val' needs val_fraction > 0 (or use --select last)")
    _require(cfg.val_clips >= 0, "config key 'val_clips': must be >= 0")
    _require(cfg.eval_batch_size >= 0, "config key 'eval_batch_size': must be >= 0")
    _require(cfg.eval_every_epochs >= 1, "config key 'eval_every_epochs': must be >= 1")
    _require(cfg.plateau_patience >= 1, "config key 'plateau_patience': must be >= 1")
    _require(0.0 <= getattr(cfg, "dropout", 0.0) < 1.0, "config key 'dropout': must be within [0, 1)")


def loss_weights(cfg: PretrainConfig) -> dict[str, float]:
    """The four loss-term weights of a pretraining config as the dict losses.tclr_loss takes."""
    return {term: getattr(cfg, "w_" + term) for term in LOSS_TERMS}


# --------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------

def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-Python dict of a config (tuples become lists)."""
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(dataclasses.asdict(cfg))


def from_dict(job: str, values: dict[str, Any]):
    """Rebuild a job config from :func:`to_dict` output; derived fields are recomputed by finalize."""
    cfg = JOBS[job]()
    leaves = leaf_fields(type(cfg))
    settable = {k: v for k, v in _flatten_mapping(values, "saved config").items()
                if not (k in leaves and leaves[k][1].metadata.get("derived"))}
    apply_overrides(cfg, settable, source="saved config")
    return cfg


def save_config(cfg: Any, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config as ``config.yaml`` into ``run_dir`` (re-usable via --config)."""
    path = Path(run_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    values = to_dict(cfg)
    header = (f"# Resolved {type(cfg).__name__}. Re-run with: --config {path.name}\n"
              "# Derived fields (recomputed on load, not settable): "
              + ", ".join(n for n, (_p, f, _t) in leaf_fields(type(cfg)).items()
                          if f.metadata.get("derived")) + "\n")
    path.write_text(header + yaml.safe_dump(_strip_derived(cfg, values), sort_keys=False))
    return path


def _strip_derived(cfg: Any, values: dict[str, Any]) -> dict[str, Any]:
    leaves = leaf_fields(type(cfg))
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items()
                        if not leaves[k][1].metadata.get("derived")}
        elif not leaves[key][1].metadata.get("derived"):
            out[key] = value
    return out


def describe(cfg: Any, sources: dict[str, str] | None = None) -> str:
    """Human-readable multi-line dump of the resolved config (for banners).

    Args:
        cfg: a job config.
        sources: leaf name -> where its value came from (:func:`value_sources`), printed beside
            each value when given.
    """
    lines = []
    for name, (path, _f, _tp) in leaf_fields(type(cfg)).items():
        value = f"{_get(cfg, path)!r}"
        if sources is not None:
            value = f"{value:32s} # {sources.get(name, 'default')}"
        lines.append(f"  {name:28s} {value}")
    return "\n".join(lines)


def value_sources(job: str, args: argparse.Namespace) -> dict[str, str]:
    """Where each leaf value of a parsed command line came from (for ``--print-config``).

    Args:
        job: the job name (a JOBS key).
        args: the namespace :func:`parse_config` returned.
    Returns:
        leaf name -> "default", "preset NAME", "file PATH", "flag --name" or "derived" (the last
        source in the order defaults < preset < config file < command line).
    """
    leaves = leaf_fields(JOBS[job])
    sources = {name: "derived" if f.metadata.get("derived") else "default"
               for name, (_p, f, _t) in leaves.items()}
    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    preset = getattr(args, "preset", None) or file_values.get("preset") or ""
    if preset:
        for key in PRESETS.get(preset, {}):
            if key in leaves and sources[key] != "derived":
                sources[key] = f"preset {preset}"
        sources["preset"] = ("flag --preset" if getattr(args, "preset", None)
                             else f"file {args.config}")
    for key in _flatten_mapping(file_values, "config file"):
        norm = key.replace("-", "_")
        if norm in leaves and norm != "preset":
            sources[norm] = f"file {args.config}"
    for key in vars(args):
        if key in leaves and key != "preset":
            sources[key] = "flag --" + key.replace("_", "-")
    return sources


__all__ = [
    "ConfigError", "DataConfig", "RunConfig", "PretrainConfig", "ClassifyConfig", "LinearConfig",
    "FinetuneConfig", "RetrievalConfig", "JOBS", "PRESETS", "parse_config", "finalize",
    "apply_overrides", "apply_preset", "load_config_file", "save_config", "to_dict", "from_dict",
    "loss_weights", "leaf_fields", "describe", "build_parser", "value_sources", "job_flags",
    "help_section", "HELP_SECTIONS", "PRESET_HELP",
]
