"""Typed configuration for every job of this project: the schema.

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

This module holds what is TCLR's: the fields, the jobs, the --help layout and the validation; the
presets are in ``presets``; the dataclass/argparse/YAML machinery is ``confkit``. Everything is
importable from here (``config.parse_config``, ``from config import ConfigError``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import confkit
from confkit import (ConfigError, apply_overrides, describe, leaf_fields, load_config_file,
                     option, save_config, to_dict)
from confkit import require as _require
from losses import TERM_NAMES, resolve_weights
from presets import DEMO_LINEAR_PROBE, PRESET_HELP, PRESETS

DATASETS = ("ucf101", "hmdb51", "kinetics400", "folder", "synthetic")
BACKBONE_NAMES = ("r3d18", "r2plus1d18", "c3d")
LOSS_TERMS = TERM_NAMES  # the loss terms (losses.TERM_NAMES); w_<term> weighs each


# The smallest network input side: C3D fails below 16 px (R3D-18 and R(2+1)D-18 run on less, but
# one minimum for every backbone keeps a config valid whatever --backbone says).
MIN_RESOLUTION = 16


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them (TCLR_SPEC sections 1, 2, 7, 8)."""

    dataset: str = option("ucf101", "dataset reader", choices=DATASETS)
    data_root: str = option("", "dataset root (UCF101: folder holding UCF-101/ and "
                                "ucfTrainTestlist/); empty = data/<dataset>")
    split: int = option(1, "official split (1, 2 or 3)")
    clip_len: int = option(16, "frames per clip (T); must be a multiple of 4")
    sparse_stride: int = option(4, "frame stride of the global (sparse) pretraining clip")
    num_local: int = option(0, "local (dense) clips per sample: clip_len / 4", derived=True)
    train_stride: int = option(2, "frame stride of classifier training/test clips ('fixed skip')")
    resolution: int = option(112, "side of the square network input in pixels, at least "
                                  f"{MIN_RESOLUTION} (C3D needs it)")
    color: str = option("bgr", "channel order fed to the network (the release's weights expect "
                               "BGR)", choices=("bgr", "rgb"))
    color_ops: str = option("release", "channels the colour augmentation's formulas (grayscale "
                                       "weights, hue, saturation/contrast grey) take as R, G, B: "
                                       "'release' = the stored channels in order, as the release's "
                                       "PIL calls on BGR arrays; 'true_channels' = the real R, G, "
                                       "B of --color", choices=("release", "true_channels"))
    num_workers: int = option(8, "DataLoader worker processes per training process")
    augment_on: str = option("cpu", "where pretraining augmentation runs: 'cpu' (DataLoader "
                                    "workers) or 'device' (batched on the training device)",
                             choices=("cpu", "device"))
    eval_crop: float = option(0.8, "evaluation clips (test, validation, retrieval features): side "
                                   "of the centre square as a fraction of the frame height (the "
                                   "release)")
    eval_flip: bool = option(False, "evaluation clips: flip them horizontally (the release: no)")
    max_bad_fraction: float = option(0.25, "stop when more than this fraction of one batch's "
                                           "videos failed to decode (failures are skipped and "
                                           "reported)")
    synthetic_classes: int = option(10, "synthetic dataset: number of classes (generated if "
                                        "absent)")
    synthetic_videos_per_class: int = option(12, "synthetic dataset: videos per class")
    synthetic_frames: int = option(150, "synthetic dataset: frames per video")
    synthetic_width: int = option(320, "synthetic dataset: frame width in pixels")
    synthetic_height: int = option(240, "synthetic dataset: frame height in pixels")
    synthetic_design: str = option("varied", "synthetic dataset: 'varied' (appearance varies "
                                             "within every class), 'trajectory' (one look for "
                                             "every video; classes differ only in a square's path) "
                                             "or 'switch' (two such paths one after the other; "
                                             "the class is the pair)",
                                   choices=("varied", "trajectory", "switch"))


@dataclass
class RunConfig:
    """Fields every job shares: model choice, run folder, seed, device."""

    data: DataConfig = field(default_factory=DataConfig)
    preset: str = option("", "name of the preset these values started from (informational)")
    backbone: str = option("r3d18", "backbone architecture", choices=BACKBONE_NAMES)
    width: int = option(64, "base channel width of the backbone (64 = paper; smaller for CPU "
                            "tests)")
    epochs: int = option(100, "training epochs")
    batch_size: int = option(40, "global batch size in videos, shared by all processes")
    per_device_batch: int = option(0, "batch per process: batch_size / world size", derived=True)
    out_dir: str = option("runs/job", "run folder: config, checkpoints, logs, results")
    seed: int = option(0, "random seed for sampling, augmentation and initialisation")
    device: str = option("auto", "'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'")
    amp: str = option("auto", "mixed precision: 'auto' (fp16 + grad scaler on CUDA as the release, "
                              "float32 on CPU), 'fp16', 'bf16' or 'off'",
                      choices=("auto", "fp16", "bf16", "off"))
    drop_last: bool = option(False, "training: drop each epoch's last partial batch. One process "
                                    "keeps it by default, as the release (239 pretraining steps "
                                    "per epoch on UCF101 split 1, the last of 17 videos; a last "
                                    "pretraining batch of one video is dropped); under torchrun it "
                                    "is always dropped")
    max_steps_per_epoch: int = option(0, "stop each epoch after this many steps (0 = full epoch); "
                                         "for smoke tests and demos")
    log_every_steps: int = option(10, "TensorBoard scalar interval in steps")
    progress: bool = option(True, "show tqdm progress bars on rank 0")
    overwrite: bool = option(False, "replace the earlier run of this job in out_dir instead of "
                                    "refusing to start; its outputs are kept aside until the new "
                                    "run saved its first result, and put back if it fails first")
    dist_timeout_s: float = option(600.0, "multi-process runs: seconds a process waits for the "
                                          "others in a collective; a dead or hung peer then ends "
                                          "the job with an error instead of a hang")
    dist_backend: str = option("auto", "multi-process runs: process-group backend; 'auto' = NCCL "
                                       "on CUDA, gloo on CPU; 'gloo' on CUDA lets processes share "
                                       "one GPU (slow; for tests)",
                               choices=("auto", "nccl", "gloo"))
    tf32: str = option("release", "TensorFloat-32 on Ampere and later GPUs: 'release' (TF32 in "
                                  "convolutions and matmuls, as the release's torch 1.9), "
                                  "'torch_default' (convolutions only, torch 2.x's default) or "
                                  "'off' (true float32 everywhere)",
                       choices=("release", "torch_default", "off"))


@dataclass
class PretrainConfig(RunConfig):
    """TCLR pretraining (TCLR_SPEC sections 1-6)."""

    epochs: int = option(300, "pretraining epochs (the release ran until stopped; our fixed "
                              "budget)")
    out_dir: str = option("runs/pretrain", "run folder: config.yaml, log.txt, log.jsonl, "
                                           "tensorboard/, checkpoints/ (latest.pth, best.pth, "
                                           "epoch_NNNN.pth), training_curves.png")
    proj_dim: int = option(128, "output dimension of the projection head")
    lr: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(1e-9, "Adam weight decay")
    schedule: str = option("release", "'release': warm-up then /10 after a loss plateau; 'cosine': "
                                      "warm-up then cosine decay over the epochs",
                           choices=("release", "cosine"))
    warmup_factors: tuple = option((0.01, 0.05, 0.1, 0.5, 1.0),
                                   "lr multipliers of the first epochs")
    plateau_patience: int = option(9, "release schedule: epochs without loss improvement before lr "
                                      "/10")
    plateau_factor: float = option(0.1, "release schedule: lr multiplier applied on a plateau")
    temperature: float = option(0.1, "softmax temperature of every contrastive loss")
    w_ic_global: float = option(1.0, "weight of the instance loss on global clips (0 drops it)")
    w_ic_local: float = option(1.0, "weight of the instance loss on local clips (0 drops it)")
    w_local_local: float = option(1.0, "weight of the local-local loss (0 drops it)")
    w_global_local: float = option(1.0, "weight of the global-local loss (0 drops it)")
    fused_forward: bool = option(False, "one backbone pass over all 10 clip groups (BatchNorm "
                                        "statistics over all clips) instead of the release's 10 "
                                        "passes")
    channels_last: bool = option(False, "channels_last_3d memory format (faster 3D convolutions "
                                        "with cuDNN and with oneDNN on the CPU)")
    compile: bool = option(False, "torch.compile the model")
    sync_bn: bool = option(False, "convert BatchNorm to SyncBatchNorm under DDP")
    grad_checkpoint: bool = option(False, "activation checkpointing of the backbone stages (saves "
                                          "memory)")
    resume: str = option("", "'auto' (latest checkpoint in out_dir if any) or a checkpoint path")
    overwrite: bool = option(False, "replace the earlier run in out_dir (its checkpoints, logs and "
                                    "config; kept aside until the new run saved its first "
                                    "checkpoint) instead of refusing to start; --resume continues "
                                    "it instead")
    allow_config_change: bool = option(False, "--resume: accept a checkpoint trained with another "
                                              "batch_size, clip_len, sparse_stride or resolution "
                                              "(the resumed run is then not the continuation of "
                                              "the same training)")
    save_every_epochs: int = option(5, "also keep checkpoints/epoch_NNNN.pth every N epochs (0 = "
                                       "never)")
    save_every_steps: int = option(0, "also refresh checkpoints/latest.pth every N steps (0 = per "
                                      "epoch)")
    monitor_every: int = option(0, "every N epochs and at the end, score the backbone on a "
                                   "train-split monitor set: Recall@1/5, kNN top-1 and timestep "
                                   "similarity (0 = off; the paper and demo presets turn it on)")
    monitor_videos: int = option(4, "monitor set: train videos per class (seeded, stratified)")
    monitor_clips: int = option(2, "monitor: clips per video (the retrieval protocol has 9)")
    keep_best: str = option("loss", "what chooses checkpoints/best.pth: 'loss' (lowest epoch-mean "
                                    "loss, the release) or 'monitor' (highest monitor Recall@1)",
                            choices=("loss", "monitor"))


@dataclass
class ClassifyConfig(RunConfig):
    """Shared fields of linear evaluation and finetuning (TCLR_SPEC section 7)."""

    checkpoint: str = option("", "backbone weights to start from (empty = random initialisation)")
    trust_checkpoint: bool = option(False, "allow unpickling a checkpoint with Python objects (the "
                                           "release's files); only for files you trust")
    batch_size: int = option(32, "global batch size in clips")
    drop_last: bool = option(False, "training: drop each epoch's last partial batch of clips. One "
                                    "process keeps it by default, as the release's linear "
                                    "evaluation (UCF101 split 1 at batch 32: 298 batches of 32 "
                                    "and one of 1 clip); under torchrun it is always dropped")
    lr: float = option(1e-2, "Adam learning rate")
    weight_decay: float = option(0.0, "Adam weight decay")
    plateau_patience: int = option(3, "epochs whose training loss is above the best before lr /10 "
                                      "(see lr_rule)")
    lr_rule: str = option("release", "'release': the release's counter of epochs above the best "
                                     "loss, not reset by an improvement; stop after the first "
                                     "epoch trained below min_lr. 'consecutive': patience epochs "
                                     "in a row without improvement; stop before an lr below min_lr",
                          choices=("release", "consecutive"))
    min_lr: float = option(1e-5, "stop training once the learning rate falls below this (see "
                                 "lr_rule)")
    num_test_clips: int = option(10, "clips per test video; softmax averaged over them")
    val_fraction: float = option(0.1, "fraction of the train split held out (stratified, seeded) "
                                      "for model selection; 0 = report the last epoch")
    select: str = option("val", "model selection: 'val' (held-out train videos), 'last' (last "
                                "epoch) or 'best_test' (the release's choice: best test accuracy, "
                                "optimistic)", choices=("val", "last", "best_test"))
    label_fraction: float = option(1.0, "fraction of labelled train videos used, stratified per "
                                        "class")
    eval_every_epochs: int = option(1, "evaluate on the validation videos every N epochs")
    val_clips: int = option(0, "clips per validation video (0 = num_test_clips: the test protocol)")
    eval_batch_size: int = option(0, "videos per evaluation batch per process (0 = per-process "
                                     "batch divided by the clips per video, at least 1)")


@dataclass
class LinearConfig(ClassifyConfig):
    """Linear evaluation: frozen backbone, one Linear layer on time/space-pooled features."""

    out_dir: str = option("runs/linear", "run folder: config.yaml, log.txt, log.jsonl, "
                                         "tensorboard/, results.json, per_class_accuracy.csv, "
                                         "confusion_matrix.csv/.png, training_curves.png, "
                                         "labelled_videos.txt, val_videos.txt, checkpoints/ "
                                         "(latest.pth, best.pth)")
    amp: str = option("off", "precision: 'off' (float32, as the release's linear evaluation, the "
                             "default), or mixed precision 'auto' / 'fp16' (fp16 + grad scaler on "
                             "CUDA) or 'bf16'; CPU always runs float32",
                      choices=("auto", "fp16", "bf16", "off"))
    bn_mode: str = option("frozen", "'frozen': backbone BatchNorm in eval mode (default); 'train': "
                                    "the release's behaviour, running statistics keep updating",
                          choices=("frozen", "train"))


@dataclass
class FinetuneConfig(ClassifyConfig):
    """Full finetuning: every layer trains (lr 1e-4 Adam: our documented starting point)."""

    out_dir: str = option("runs/finetune", "run folder: config.yaml, log.txt, log.jsonl, "
                                           "tensorboard/, results.json, per_class_accuracy.csv, "
                                           "confusion_matrix.csv/.png, training_curves.png, "
                                           "labelled_videos.txt, val_videos.txt, checkpoints/ "
                                           "(latest.pth, best.pth)")
    lr: float = option(1e-4, "Adam learning rate (the release has no finetuning script; our "
                             "choice)")
    dropout: float = option(0.0, "dropout before the classifier")


@dataclass
class RetrievalConfig(RunConfig):
    """Nearest-neighbour retrieval: test videos query the train gallery (TCLR_SPEC section 7)."""

    out_dir: str = option("runs/retrieval", "run folder: config.yaml, log.txt, tensorboard/, "
                                            "results.json, per_class_recall.csv, "
                                            "recall_at_k.png, retrieval_grid.png/.txt, features/ "
                                            "(the feature cache, unless --cache-dir)")
    amp: str = option("off", "precision of feature extraction: 'off' (float32, as the release's "
                             "retrieval, the default), or autocast 'auto' / 'fp16' or 'bf16' on "
                             "CUDA", choices=("auto", "fp16", "bf16", "off"))
    checkpoint: str = option("", "backbone weights (empty = random initialisation)")
    trust_checkpoint: bool = option(False, "allow unpickling a checkpoint with Python objects (the "
                                           "release's files); only for files you trust")
    epochs: int = option(0, "unused by retrieval", derived=True)
    batch_size: int = option(8, "videos per feature-extraction batch")
    num_clips: int = option(9, "clips per video; features averaged over them")
    ks: tuple = option((1, 5, 10, 20, 50), "k values of Recall@k")
    cache_dir: str = option("", "feature cache folder (empty = <out_dir>/features)")
    num_grid_queries: int = option(8, "queries shown in the retrieval picture grid")
    grid_topk: int = option(5, "nearest gallery videos shown per query in the picture grid")
    embedding_points: int = option(1000, "test videos sent to TensorBoard's embedding projector "
                                         "(evenly subsampled; 0 = none)")


@dataclass
class ExtractConfig(RunConfig):
    """Features of any videos with a pretrained backbone (extract_features.py): features.npy,
    index.csv and meta.json in --out-dir, written in shards as it goes; a rerun computes only the
    videos that are new or changed."""

    out_dir: str = option("runs/features", "output folder: features.npy [N, D], index.csv, "
                                           "meta.json, shards/ (one checkpoint and protocol per "
                                           "folder)")
    videos: str = option("", "a folder of videos, searched recursively (.avi .mp4 .mkv .webm .mov "
                             ".m4v, any letter case)")
    list: str = option("", "a text file with one video path per line ('#' starts a comment; a "
                           "relative path is relative to the file's folder)")
    subset: str = option("all", "without --videos or --list: the videos of --dataset/--data-root "
                                "--split: 'train', 'test' or 'all' (labels are not needed)",
                         choices=("train", "test", "all"))
    checkpoint: str = option("", "backbone weights: a checkpoint file (this project's, the "
                                 "release's with --trust-checkpoint, torchvision-format) or "
                                 "'random' (seeded by --seed)")
    trust_checkpoint: bool = option(False, "allow unpickling a checkpoint with Python objects (the "
                                           "release's files); only for files you trust")
    epochs: int = option(0, "unused by feature extraction", derived=True)
    amp: str = option("off", "precision of the forward pass: 'off' (float32, as retrieval), or "
                             "autocast 'auto' / 'fp16' or 'bf16' on CUDA",
                      choices=("auto", "fp16", "bf16", "off"))
    batch_size: int = option(8, "videos per forward batch (shared by all processes)")
    num_clips: int = option(9, "clips per video (evenly spaced, as the retrieval protocol)")
    feature: str = option("retrieval", "'retrieval': the retrieval protocol's feature (feature map "
                                       "[C, T'] flattened, 2048-d for the paper's backbones); "
                                       "'pooled': the map averaged over time (512-d); either is "
                                       "averaged over the clips and L2-normalised",
                          choices=("retrieval", "pooled"))
    per_clip: bool = option(False, "keep each clip's feature: features.npy is [N, num_clips, D], "
                                   "each clip L2-normalised")
    dtype: str = option("float32", "dtype of features.npy", choices=("float32", "float16"))
    shard_size: int = option(64, "videos per shard file written as extraction goes (a killed run "
                                 "loses at most this many per process)")
    overwrite: bool = option(False, "replace the features of another checkpoint or protocol in "
                                    "--out-dir (kept aside until the new ones are written) instead "
                                    "of refusing")


JOBS: dict[str, type] = {
    "pretrain": PretrainConfig,
    "linear": LinearConfig,
    "finetune": FinetuneConfig,
    "retrieval": RetrievalConfig,
    "extract": ExtractConfig,
}


# --------------------------------------------------------------------------------------------
# --help layout
# --------------------------------------------------------------------------------------------

# --help sections, in order; a field's section is looked up in _SECTION_OF, else DataConfig's
# fields are "data" and the rest "runtime".
HELP_SECTIONS: dict[str, str] = {
    "input": "which videos features are extracted from",
    "data": "which videos, and how clips are cut from them",
    "model": "the network and the weights it starts from",
    "optimisation": "optimiser, schedule, batch and length of training",
    "loss": "the TCLR objective (TCLR_SPEC sections 3-5)",
    "evaluation": "evaluation protocol, model selection and pictures",
    "features": "what a video's feature is and how it is stored",
    "runtime": "run folder, device, precision, logging, checkpoints",
}
_SECTION_OF: dict[str, str] = {
    **{name: "model" for name in ("backbone", "width", "proj_dim", "fused_forward", "checkpoint",
                                  "trust_checkpoint", "bn_mode", "dropout")},
    **{name: "optimisation" for name in ("epochs", "batch_size", "lr", "weight_decay", "schedule",
                                         "warmup_factors", "plateau_patience", "plateau_factor",
                                         "min_lr", "lr_rule", "max_steps_per_epoch", "drop_last")},
    **{name: "loss" for name in ("temperature", *("w_" + term for term in LOSS_TERMS))},
    **{name: "evaluation" for name in ("num_test_clips", "val_fraction", "select",
                                       "label_fraction", "eval_every_epochs", "val_clips",
                                       "eval_batch_size", "num_clips", "ks", "cache_dir",
                                       "num_grid_queries", "grid_topk", "embedding_points",
                                       "monitor_every", "monitor_videos", "monitor_clips",
                                       "keep_best")},
}
# Fields a job carries (the shared DataConfig/RunConfig) but does not use: still accepted (a preset
# or a config file written by another job may set them), left out of that job's --help. The
# synthetic generator's sizes are listed under pretraining, the job that normally generates the
# data; the other jobs accept them too (--help-all shows every accepted flag).
_SYNTHETIC = ("synthetic_classes", "synthetic_videos_per_class", "synthetic_frames",
              "synthetic_width", "synthetic_height")
_NOT_USED_BY: dict[str, tuple[str, ...]] = {
    "pretrain": ("train_stride", "eval_crop", "eval_flip"),    # classifier and evaluation clips
    "linear": ("sparse_stride", "augment_on", "log_every_steps") + _SYNTHETIC,
    "finetune": ("sparse_stride", "augment_on", "log_every_steps") + _SYNTHETIC,
    "retrieval": ("sparse_stride", "augment_on", "color_ops", "log_every_steps",
                  "max_steps_per_epoch", "max_bad_fraction", "drop_last") + _SYNTHETIC,
    "extract": ("sparse_stride", "augment_on", "color_ops", "log_every_steps",
                "max_steps_per_epoch", "max_bad_fraction", "drop_last", "synthetic_design")
               + _SYNTHETIC,
}


def help_section(name: str, job: str = "") -> str:
    """The --help section of a leaf field name (one of HELP_SECTIONS)."""
    if job == "retrieval" and name == "batch_size":
        return "evaluation"          # retrieval trains nothing: its batch is feature extraction
    if job == "extract":
        if name in ("videos", "list", "subset", "dataset", "data_root", "split"):
            return "input"
        if name in ("feature", "per_clip", "dtype", "num_clips", "shard_size", "batch_size",
                    "clip_len", "train_stride", "resolution", "color", "eval_crop", "eval_flip"):
            return "features"
    if name in _SECTION_OF:
        return _SECTION_OF[name]
    return "data" if name in {f.name for f in dataclasses.fields(DataConfig)} else "runtime"


def job_flags(job: str) -> list[str]:
    """The leaf fields a job's --help shows: settable (not derived) and used by the job."""
    return [name for name, (_p, f, _t) in leaf_fields(JOBS[job]).items()
            if not confkit.is_derived(f) and name != "preset"
            and name not in _NOT_USED_BY.get(job, ())]


# The jobs as confkit sees them: classes, presets and the --help layout above.
_JOBS = confkit.Jobs(classes=JOBS, presets=PRESETS, preset_help=PRESET_HELP,
                     sections=HELP_SECTIONS, section_of=help_section, shown=job_flags)


# --------------------------------------------------------------------------------------------
# A job's command line (confkit.cli does the work)
# --------------------------------------------------------------------------------------------

def build_parser(job: str, description: str | None = None,
                 show_all: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with one flag per leaf field of the job's config (values stay strings).

    The help lists the flags by section (HELP_SECTIONS) and only those the job uses; the others
    are accepted silently (``show_all`` lists them too, as ``--help-all`` does). The presets are
    listed with what they are for and their values.
    """
    return confkit.build_parser(_JOBS, job, description, show_all)


def parse_config(job: str, argv: list[str] | None = None, *, world_size: int = 1,
                 finalize_config: bool = True):
    """Parse the command line of a job into a resolved config.

    Returns:
        (cfg, args): the config dataclass and argparse namespace (for --print-config).
    Raises:
        ConfigError: for unknown flags/keys, wrong types or impossible values.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, args = confkit.parse_command_line(_JOBS, job, argv)
    if finalize_config:
        cfg = finalize(cfg, world_size=world_size)
    return cfg, args


def apply_preset(cfg: Any, name: str) -> None:
    """Set the values of preset ``name`` that ``cfg``'s job has (and ``cfg.preset``)."""
    confkit.apply_preset(_JOBS, cfg, name)


def value_sources(job: str, args: argparse.Namespace) -> dict[str, str]:
    """Where each leaf value of a job's parsed command line came from (for ``--print-config``):
    leaf name -> "default", "preset NAME", "file PATH", "flag --name" or "derived"."""
    return confkit.value_sources(_JOBS, job, args)


def from_dict(job: str, values: dict[str, Any]):
    """Rebuild a job config from :func:`to_dict` output; derived fields are recomputed by finalize."""
    return confkit.from_dict(JOBS[job], values)


# --------------------------------------------------------------------------------------------
# Validation and derived values: the one place
# --------------------------------------------------------------------------------------------

MIN_EVAL_CROP = 0.1  # smallest centre crop (fraction of the frame height) an evaluation accepts
MAX_SEED = 2 ** 63   # torch.Generator seeds are 64-bit; DistributedSampler adds the epoch

# Path settings whose "~" is expanded as the shell would (a config file's values never see a shell)
PATH_KEYS = ("data_root", "out_dir", "checkpoint", "resume", "cache_dir", "videos", "list")


def finalize(cfg: Any, world_size: int = 1):
    """Validate ``cfg`` and fill its derived fields. Returns the same object.

    Args:
        cfg: a job config (PretrainConfig, LinearConfig, FinetuneConfig or RetrievalConfig).
        world_size: number of training processes sharing the global batch.
    """
    confkit.check_choices(cfg)
    confkit.require_finite(cfg)
    confkit.expand_user_paths(cfg, PATH_KEYS)
    d = cfg.data
    _require(d.split in (1, 2, 3), f"config key 'split': {d.split} is not 1, 2 or 3")
    _require(d.clip_len >= 4 and d.clip_len % 4 == 0,
             f"config key 'clip_len': {d.clip_len} must be a positive multiple of 4 (the backbones "
             "reduce time by 4, and each feature-map timestep pairs with one local clip)")
    d.num_local = d.clip_len // 4
    for key in ("sparse_stride", "train_stride", "resolution"):
        _require(getattr(d, key) >= 1, f"config key {key!r}: must be >= 1, got {getattr(d, key)}")
    _require(d.resolution >= MIN_RESOLUTION,
             f"config key 'resolution': {d.resolution} is too small: the minimum is "
             f"{MIN_RESOLUTION} pixels (C3D's four poolings halve it four times)")
    _require(d.num_workers >= 0, f"config key 'num_workers': must be >= 0, got {d.num_workers}")
    _require(0.0 <= d.max_bad_fraction <= 1.0,
             f"config key 'max_bad_fraction': must be within [0, 1], got {d.max_bad_fraction}")
    _require(MIN_EVAL_CROP <= d.eval_crop <= 1.0,
             f"config key 'eval_crop': must be within [{MIN_EVAL_CROP:g}, 1] (the side of the "
             "centre square as a fraction of the frame height; the paper's is 0.8), got "
             f"{d.eval_crop:g}: a smaller square sees next to nothing of the frame, and none at all "
             "in a short one")
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
    _require(cfg.seed < MAX_SEED, f"config key 'seed': must be below 2**63, got {cfg.seed} "
             "(torch's generators take 64-bit seeds, and the data order adds the epoch to it)")
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
    if isinstance(cfg, ExtractConfig):
        _finalize_extract(cfg)
    return cfg


def _finalize_extract(cfg: ExtractConfig) -> None:
    _require(not (cfg.videos and cfg.list),
             f"config keys 'videos' and 'list': pass one of --videos {cfg.videos} and --list "
             f"{cfg.list}, not both (or neither, for --dataset's videos)")
    _require(cfg.num_clips >= 1, f"config key 'num_clips': must be >= 1, got {cfg.num_clips}")
    _require(cfg.shard_size >= 1, f"config key 'shard_size': must be >= 1, got {cfg.shard_size}")


def _finalize_pretrain(cfg: PretrainConfig) -> None:
    _require(cfg.proj_dim >= 1, f"config key 'proj_dim': must be >= 1, got {cfg.proj_dim}")
    _require(not (cfg.overwrite and cfg.resume), "config keys 'resume' and 'overwrite': --resume "
             "continues the earlier run, --overwrite replaces it; pass one of them")
    _require(cfg.lr > 0, f"config key 'lr': must be > 0, got {cfg.lr}")
    _require(cfg.weight_decay >= 0,
             f"config key 'weight_decay': must be >= 0, got {cfg.weight_decay:g}")
    _require(cfg.temperature > 0, f"config key 'temperature': must be > 0, got {cfg.temperature}")
    _require(len(cfg.warmup_factors) > 0 and all(f > 0 for f in cfg.warmup_factors),
             f"config key 'warmup_factors': expected positive numbers, got {cfg.warmup_factors}")
    try:  # the objective's own rule (also applied to any weights passed to losses.tclr_loss)
        resolve_weights(loss_weights(cfg))
    except ValueError as exc:
        raise ConfigError(f"config keys 'w_*': {exc}") from None
    _require(cfg.plateau_patience >= 1, "config key 'plateau_patience': must be >= 1")
    _require(cfg.data.num_local >= 2 or cfg.w_local_local == cfg.w_global_local == 0,
             f"config key 'clip_len': {cfg.data.clip_len} gives one local clip (K = clip_len / 4 "
             "= 1), so the local-local and global-local terms contrast a timestep only with itself "
             "and are exactly 0; use --clip-len 8 or more, or pass --w-local-local 0 "
             "--w-global-local 0 to train without them")
    _require(cfg.monitor_every >= 0, f"config key 'monitor_every': must be >= 0 (0 = off), got "
             f"{cfg.monitor_every}")
    _require(cfg.monitor_videos >= 2, f"config key 'monitor_videos': must be >= 2 videos per "
             f"class (a query needs a same-class neighbour), got {cfg.monitor_videos}")
    _require(cfg.monitor_clips >= 1, f"config key 'monitor_clips': must be >= 1, got "
             f"{cfg.monitor_clips}")
    _require(cfg.keep_best != "monitor" or cfg.monitor_every > 0,
             "config key 'keep_best': 'monitor' chooses best.pth by the monitor's Recall@1; set "
             "--monitor-every N (N >= 1) too, or use --keep-best loss")
    _require(cfg.batch_size >= 2 or cfg.w_ic_global == 0,
             "config key 'batch_size': instance contrast needs at least 2 videos per batch")


def _finalize_classify(cfg: ClassifyConfig) -> None:
    _require(cfg.lr > 0, f"config key 'lr': must be > 0, got {cfg.lr}")
    _require(cfg.weight_decay >= 0,
             f"config key 'weight_decay': must be >= 0, got {cfg.weight_decay:g}")
    job = "finetuning" if isinstance(cfg, FinetuneConfig) else "linear evaluation"
    _require(cfg.epochs >= 1, f"config key 'epochs': must be >= 1 for {job}, got "
             f"{cfg.epochs} (0 epochs would report an untrained classifier); to measure features "
             "without training use nn_retrieval.py")
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


__all__ = [
    "ConfigError", "DataConfig", "RunConfig", "PretrainConfig", "ClassifyConfig", "LinearConfig",
    "FinetuneConfig", "RetrievalConfig", "ExtractConfig", "JOBS", "PRESETS", "parse_config", "finalize",
    "apply_overrides", "apply_preset", "load_config_file", "save_config", "to_dict", "from_dict",
    "loss_weights", "leaf_fields", "describe", "build_parser", "value_sources", "job_flags",
    "help_section", "HELP_SECTIONS", "PRESET_HELP", "DATASETS", "BACKBONE_NAMES", "LOSS_TERMS",
    "DEMO_LINEAR_PROBE", "PATH_KEYS", "option",
]
