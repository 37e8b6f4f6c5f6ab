"""Action classification on top of a (pre)trained backbone: linear evaluation and full finetuning.

One engine serves both protocols (TCLR_SPEC section 7); they differ only in what trains:

- linear (:class:`config.LinearConfig`): the backbone is frozen (``requires_grad`` False) and only
  ``fc`` learns. By default the backbone's BatchNorm layers stay in eval mode (``bn_mode=frozen``),
  so the backbone is a fixed function of its input; ``bn_mode=train`` reproduces the release,
  whose running statistics kept drifting with the training clips (the "linear" probe then also
  adapts BatchNorm statistics to the downstream data). At the end, a check compares the backbone
  with a copy taken before training (parameters always; buffers too with frozen BatchNorm) and
  raises :class:`engine.errors.TrainingError` if anything changed.
- finetune (:class:`config.FinetuneConfig`): every layer trains (optional dropout before fc).

Both: Adam; lr / 10 under the release's plateau rule (``lr_rule=release``: a counter of epochs
whose training loss is above the best so far, not reset by an improvement, reaching
``plateau_patience``; training stops after the first epoch trained below ``min_lr``) or the
consecutive rule (``lr_rule=consecutive``), see engine.schedules.classifier_update; at most
``epochs`` epochs. Training clips:
16 frames at stride 2 from a random start, weak augmentation. Test: ``num_test_clips`` clips per
video with evenly spaced starts, centre crop 0.8, softmax averaged over the clips of a video, every
test video exactly once.

Model selection never looks at the test split unless asked to: ``select=val`` (default) holds out a
stratified, seeded ``val_fraction`` of the train split and keeps the epoch with the best validation
accuracy (validation uses the test protocol: multi-clip, softmax averaged); ``select=last`` keeps
the last epoch; ``select=best_test`` is the release's choice (the best test accuracy over epochs),
reported as optimistic. Limited labels (``label_fraction`` < 1): a stratified, seeded fraction of
every class of the remaining train videos (at least one per class; smaller fractions are subsets
of larger ones for the same seed); the validation videos are drawn before it and are labelled
videos beyond the fraction, which results.json notes (``select=last`` avoids them).
Outputs in the run folder: results.json, labelled_videos.txt, val_videos.txt,
per_class_accuracy.csv, confusion_matrix.csv/.png, checkpoints/latest.pth and best.pth.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

import config as config_mod
from config import ClassifyConfig, ConfigError, LinearConfig
from engine import checkpoint as ckpt_io
from engine import metrics
from engine.common import (RunContext, amp_dtype, autocast, ensure_dataset, make_loader,
                           make_scaler, run_job, seed_everything)
from engine.distributed import all_gather_objects, all_reduce_sum
from engine.errors import NonFiniteLossError, TooManyBadVideosError, TrainingError
from engine.logging import eta_text, steps_text
from engine.schedules import PlateauState, classifier_update, set_lr

SELECT_LABELS = {
    "val": "val (best accuracy on held-out train videos)",
    "last": "last (last epoch)",
    "best_test": "best_test (optimistic: selected on the test split)",
}


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class Classifier(nn.Module):
    """Backbone -> average over time (and space, inside the backbone) -> [dropout] -> Linear.

    State-dict keys are ``backbone.<torchvision-style name>`` and ``fc.weight``/``fc.bias``, so a
    classifier checkpoint also loads as backbone weights elsewhere.

    Args:
        backbone: module mapping clips [B, 3, T, H, W] -> feature map [B, C, T'] with attribute
            ``out_channels`` = C.
        num_classes: number of output classes.
        dropout: dropout probability before fc (0 = none).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(backbone.out_channels, num_classes)
        self.backbone_frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: clips [B, 3, T, H, W] -> [B, C]."""
        if self.backbone_frozen:
            # nothing upstream of fc needs a gradient: skip storing activations
            with torch.no_grad():
                return self.backbone(x).mean(dim=2)                      # [B, C]
        return self.backbone(x).mean(dim=2)                              # [B, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: clips [B, 3, T, H, W] -> [B, num_classes]."""
        return self.fc(self.dropout(self.features(x)))

    def freeze_backbone(self) -> None:
        """Stop gradients into the backbone (linear evaluation)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone_frozen = True


def set_train_mode(model: nn.Module, plain: Classifier, cfg: ClassifyConfig) -> None:
    """model.train(), except the backbone of a linear probe with frozen BatchNorm (eval mode)."""
    model.train()
    if isinstance(cfg, LinearConfig) and cfg.bn_mode == "frozen":
        plain.backbone.eval()


def backbone_snapshot(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer of the backbone."""
    return {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}


def check_backbone_unchanged(backbone: nn.Module, snapshot: dict[str, torch.Tensor],
                             include_buffers: bool) -> None:
    """Linear-evaluation sanity check (as MoCo's): the frozen backbone must not have changed.

    Args:
        backbone: the backbone after training.
        snapshot: :func:`backbone_snapshot` taken before training.
        include_buffers: also compare buffers (BatchNorm running statistics); True for
            ``bn_mode=frozen``, False for ``bn_mode=train`` where they drift by design.
    Raises:
        TrainingError: naming the tensors that changed.
    """
    param_names = {n for n, _ in backbone.named_parameters()}
    changed = []
    for name, value in backbone.state_dict().items():
        if name not in param_names and not include_buffers:
            continue
        if not torch.equal(value.detach().cpu(), snapshot[name]):
            changed.append(name)
    if changed:
        raise TrainingError(
            f"linear evaluation changed {len(changed)} backbone tensor(s) that must stay frozen: "
            f"{', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}. The probe's numbers "
            "are not a linear evaluation of the checkpoint; check that the backbone's parameters "
            "have requires_grad=False and are not in the optimizer, and that BatchNorm is in eval "
            "mode.")


def build_classifier(cfg: ClassifyConfig, num_classes: int) -> Classifier:
    """Backbone of the configured architecture/width + fc, randomly initialised from cfg.seed."""
    from models import build_backbone
    backbone = build_backbone(cfg.backbone, width=cfg.width)
    dropout = getattr(cfg, "dropout", 0.0)
    return Classifier(backbone, num_classes, dropout=dropout)


def init_backbone(backbone: nn.Module, cfg: Any, logger) -> dict[str, Any]:
    """Load ``cfg.checkpoint`` into the backbone (random initialisation when it is empty).

    Channel order policy: when the checkpoint records one (this project's ``meta.color``; the
    release's files are BGR) and it differs from ``cfg.data.color``, this raises ConfigError:
    features of a network fed the other channel order are silently worse, which would put a wrong
    number in a table. When the file does not say (bare / torchvision state dicts), a warning
    names the order used.

    Returns:
        {"init": "random"|"checkpoint", "checkpoint": path or None, "init_source": ...,
         "load_summary": one line}.
    Raises:
        models.CheckpointError: unreadable file or backbone mismatch.
        ConfigError: channel-order mismatch.
    """
    if not cfg.checkpoint:
        logger.info("no --checkpoint: random initialisation (the from-scratch baseline)")
        return {"init": "random", "checkpoint": None, "init_source": None,
                "load_summary": "random initialisation"}
    from models import load_backbone_weights
    report = load_backbone_weights(backbone, cfg.checkpoint, trust_checkpoint=cfg.trust_checkpoint)
    ckpt_io.require_finite(backbone.state_dict(), f"{cfg.checkpoint}: its backbone weights",
                           " It cannot be evaluated: use a checkpoint from before the training "
                           "diverged (checkpoints/epoch_NNNN.pth)")
    summary = load_summary(cfg.checkpoint, report)
    logger.info(summary)
    if report.color is not None and report.color != cfg.data.color:
        raise ConfigError(
            f"{cfg.checkpoint} was trained on {report.color.upper()} frames but this run feeds "
            f"{cfg.data.color.upper()} (--color {cfg.data.color}); pass --color {report.color} so "
            "the network sees the channel order it learned")
    if report.color is None:
        logger.warning(f"{cfg.checkpoint} does not record its channel order; feeding "
                       f"{cfg.data.color.upper()} frames (--color). torchvision's Kinetics weights "
                       "expect RGB, the release's expect BGR.")
    return {"init": "checkpoint", "checkpoint": str(cfg.checkpoint), "init_source": report.source,
            "load_summary": summary}


def load_summary(path: str, report) -> str:
    """One line describing a models.LoadReport."""
    prefixes = sorted({k.split(".")[0] for k in report.ignored})
    ignored = f"{len(report.ignored)} keys ignored" + (f" ({', '.join(prefixes[:6])})"
                                                       if prefixes else "")
    missing = f"; {len(report.missing)} optional keys absent" if report.missing else ""
    return (f"loaded {len(report.loaded)} backbone tensors from {path} ({report.source} format, "
            f"channel order {report.color or 'not recorded'}); {ignored}{missing}")


# --------------------------------------------------------------------------------------------
# Train / validation / label subsets
# --------------------------------------------------------------------------------------------

def stratified_pick(videos: list, fraction: float, seed: int, stream: int,
                    keep_min: int = 0, take_min: int = 0) -> tuple[list, list]:
    """Pick ``fraction`` of the videos of every class, at random (seeded).

    Per class with n videos, round(fraction * n) videos are picked, at least ``take_min`` and at
    most n - ``keep_min``. The class's videos are shuffled once by (seed, stream, class) and the
    first ones taken, so smaller fractions give subsets of larger ones with the same seed.

    Args:
        videos: list of (path, label).
        fraction: share of each class to pick, in [0, 1].
        seed, stream: the random seed, and a stream number that separates independent draws.
        keep_min: videos per class that must stay unpicked (when the class has more than that).
        take_min: videos per class that must be picked (when the class has that many).
    Returns:
        (picked, rest), each in the input order.
    """
    by_class: dict[int, list[int]] = {}
    for i, (_path, label) in enumerate(videos):
        by_class.setdefault(int(label), []).append(i)
    picked: set[int] = set()
    for label, idx in sorted(by_class.items()):
        n = len(idx)
        count = int(math.floor(fraction * n + 0.5))
        count = max(count, min(take_min, n))
        count = min(count, max(0, n - keep_min)) if n > keep_min else min(count, n)
        rng = np.random.default_rng([seed, stream, label])
        picked.update(idx[j] for j in rng.permutation(n)[:count])
    return ([v for i, v in enumerate(videos) if i in picked],
            [v for i, v in enumerate(videos) if i not in picked])


def split_train_videos(videos: list, cfg: ClassifyConfig) -> tuple[list, list]:
    """(labelled training videos, validation videos) from the train split.

    Validation (select=val): ``val_fraction`` of every class (at least one video per class, and
    at least one left for training), drawn first, so the validation set does not depend on the
    label fraction. Then ``label_fraction`` of every class of the remainder (at least one video
    per class) is kept as the labelled training set.
    """
    val: list = []
    pool = videos
    if cfg.select == "val" and cfg.val_fraction > 0:
        val, pool = stratified_pick(videos, cfg.val_fraction, cfg.seed, stream=0, keep_min=1,
                                    take_min=1)
    if cfg.label_fraction < 1.0:
        labelled, _ = stratified_pick(pool, cfg.label_fraction, cfg.seed, stream=1, take_min=1)
    else:
        labelled = list(pool)
    return labelled, val


def write_video_list(path: Path, videos: list, root: str) -> None:
    """One "<path relative to root> <0-based label>" line per video (label = the last field)."""
    path.write_text("".join(f"{os.path.relpath(p, root)} {int(y)}\n" for p, y in videos))


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

@dataclass
class ClassifyData:
    """Loaders and lists of one classification run."""

    train_loader: Any
    train_sampler: Any
    val_loader: Any | None
    test_loader: Any
    class_names: list
    train_videos: list
    val_videos: list
    test_videos: list


def eval_batch_size(cfg: ClassifyConfig, num_clips: int) -> int:
    """Videos per evaluation batch per process: cfg.eval_batch_size, or about as many clips as a
    training batch (per_device_batch // num_clips, at least 1)."""
    if cfg.eval_batch_size:
        return cfg.eval_batch_size
    return max(1, cfg.per_device_batch // num_clips)


def build_data(cfg: ClassifyConfig, ctx: RunContext) -> ClassifyData:
    """Video lists, subsets (written to the run folder) and loaders."""
    from dataloaders import datasets as ds
    from dataloaders.splits import build_video_list, check_split_lists
    ensure_dataset(cfg, ctx.logger)
    d = cfg.data
    train_all, class_names = build_video_list(d.dataset, d.data_root, split=d.split, subset="train")
    test_videos, test_classes = build_video_list(d.dataset, d.data_root, split=d.split,
                                                 subset="test")
    if list(test_classes) != list(class_names):
        raise TrainingError(f"{d.dataset} split {d.split} under {d.data_root}: the train and test "
                            "lists name different classes")
    for note in check_split_lists(train_all, test_videos, f"{d.dataset} split {d.split} under "
                                                          f"{d.data_root}"):
        ctx.logger.warning(note)
    ds.check_eval_lengths(test_videos, d.clip_len, d.train_stride, f"{d.dataset} split {d.split} "
                                                                    "test")
    train_videos, val_videos = split_train_videos(train_all, cfg)
    train_set = ds.build_dataset(d, "train", train_videos, cfg.seed)
    if len(train_set) < cfg.batch_size:
        raise TrainingError(too_few_videos(cfg, len(train_all), len(train_videos),
                                           len(val_videos)))
    train_loader, train_sampler = make_loader(train_set, cfg, ctx.dist, train=True,
                                              collate_fn=ds.collate_clips)
    val_loader = None
    if val_videos:
        val_clips = cfg.val_clips or cfg.num_test_clips
        val_loader = _eval_loader(cfg, ctx, val_videos, val_clips)
    test_loader = _eval_loader(cfg, ctx, test_videos, cfg.num_test_clips)
    ctx.logger.info(
        f"{d.dataset} split {d.split}: {len(train_all)} train videos -> {len(train_videos)} "
        f"labelled for training (label fraction {cfg.label_fraction:g}), {len(val_videos)} held "
        f"out for validation (val fraction {cfg.val_fraction:g}, seed {cfg.seed}); "
        f"{len(test_videos)} test videos; {len(class_names)} classes; "
        f"{steps_text(len(train_loader), cfg.max_steps_per_epoch)} of {cfg.batch_size} clips, "
        f"at most {cfg.epochs} epochs")
    return ClassifyData(train_loader, train_sampler, val_loader, test_loader, list(class_names),
                        train_videos, val_videos, test_videos)


def too_few_videos(cfg: ClassifyConfig, listed: int, labelled: int, held_out: int) -> str:
    """Why fewer labelled videos than one batch remain, naming the setting that causes it."""
    text = (f"{labelled} labelled training videos, fewer than one batch ({cfg.batch_size}): the "
            f"train list has {listed}")
    if held_out and listed - held_out < cfg.batch_size <= listed:
        return (f"{text}, of which --val-fraction {cfg.val_fraction:g} holds out {held_out} for "
                f"validation (at least one per class); lower --val-fraction, use --select last "
                f"(no validation videos), or lower --batch-size")
    if cfg.label_fraction < 1.0 and listed - held_out >= cfg.batch_size:
        return (f"{text}, and --label-fraction {cfg.label_fraction:g} keeps {labelled} of them; "
                "raise --label-fraction or lower --batch-size")
    return (f"{text}{f' ({held_out} held out for validation)' if held_out else ''}; lower "
            "--batch-size")


def write_subsets(ctx: RunContext, data: "ClassifyData") -> None:
    """labelled_videos.txt and val_videos.txt in the run folder (rank 0)."""
    if ctx.dist.is_main:
        root = ctx.cfg.data.data_root
        write_video_list(ctx.run_dir / "labelled_videos.txt", data.train_videos, root)
        write_video_list(ctx.run_dir / "val_videos.txt", data.val_videos, root)


def _eval_loader(cfg: ClassifyConfig, ctx: RunContext, videos: list, num_clips: int):
    from dataloaders import datasets as ds
    dataset = ds.build_dataset(cfg.data, "eval", videos, cfg.seed, num_clips=num_clips)
    loader, _ = make_loader(dataset, cfg, ctx.dist, train=False, collate_fn=ds.collate_multiclip,
                            batch_size=eval_batch_size(cfg, num_clips))
    return loader


def batch_parts(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """(clips on device, labels on device, video ids, decode failures) of a loader batch.

    Training batches (collate_clips) hold "clip" [B, 3, T, S, S]; evaluation batches
    (collate_multiclip) hold "clips" [B, C_clips, 3, T, S, S] and "video_id".
    """
    clips = batch["clip"] if "clip" in batch else batch["clips"]
    ids = batch["video_id"] if "video_id" in batch else batch.get("index", torch.zeros(0))
    return (clips.to(device, non_blocking=True), batch["label"].to(device, non_blocking=True),
            [int(i) for i in ids], list(batch.get("failures", [])))


# --------------------------------------------------------------------------------------------
# One training epoch, one evaluation pass
# --------------------------------------------------------------------------------------------

@dataclass
class EpochStats:
    loss: float
    accuracy: float            # clip-level training accuracy, percent
    steps: int
    failures: list


def train_one_epoch(ctx: RunContext, model: nn.Module, plain: Classifier, loader, optimizer,
                    scaler, epoch: int) -> EpochStats:
    """One pass over the labelled training clips; returns the mean loss over processes."""
    cfg: ClassifyConfig = ctx.cfg
    device, dtype = ctx.device, amp_dtype(cfg.amp, ctx.device)
    steps_total = len(loader)
    if cfg.max_steps_per_epoch:
        steps_total = min(steps_total, cfg.max_steps_per_epoch)
    set_train_mode(model, plain, cfg)
    criterion = nn.CrossEntropyLoss()
    sums = torch.zeros(3, dtype=torch.float64)                  # loss sum, correct, clips
    failures: list = []
    bar = tqdm(total=steps_total, desc=f"train {epoch + 1}/{cfg.epochs}", leave=False,
               dynamic_ncols=True,
               disable=not (ctx.dist.is_main and cfg.progress))
    step = 0
    for batch in loader:
        clips, labels, _ids, bad = batch_parts(batch, device)    # [B, 3, T, S, S], [B]
        with autocast(device, dtype):
            logits = model(clips)                                 # [B, classes]
        loss = criterion(logits.float(), labels)
        flags = torch.tensor([loss.detach().float().item(),
                              float(len(bad) > cfg.data.max_bad_fraction * clips.shape[0])])
        reduced = all_reduce_sum(flags.to(device)).cpu()
        if not math.isfinite(reduced[0].item()):
            raise NonFiniteLossError(
                f"non-finite classification loss at epoch {epoch + 1}, step {step + 1}; nothing "
                "was saved from this epoch. Try --amp off or a lower --lr.")
        if reduced[1] > 0:
            raise TooManyBadVideosError(
                f"more than {cfg.data.max_bad_fraction:.0%} of a batch failed to decode at epoch "
                f"{epoch + 1}, step {step + 1}: " + "; ".join(f"{p}: {r}" for p, r in bad))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        failures.extend(tuple(f) for f in bad)
        sums += torch.tensor([loss.item() * len(labels),
                              (logits.argmax(1) == labels).sum().item(), len(labels)],
                             dtype=torch.float64)
        step += 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.update(1)
        if step >= steps_total:
            break
    bar.close()
    total = all_reduce_sum(sums.to(device)).cpu()
    clips_seen = max(1.0, total[2].item())
    gathered = [f for per_rank in all_gather_objects(failures) for f in per_rank]
    return EpochStats(loss=total[0].item() / clips_seen,
                      accuracy=100.0 * total[1].item() / clips_seen, steps=step, failures=gathered)


@dataclass
class EvalResult:
    """Per-video results of a multi-clip evaluation (identical on every process)."""

    video_ids: torch.Tensor     # [V] dataset indices, sorted
    probs: torch.Tensor         # [V, classes] softmax averaged over each video's clips
    labels: torch.Tensor        # [V]
    num_listed: int             # videos in the list evaluated
    failures: list = field(default_factory=list)   # (path, reason) of videos that failed

    @property
    def num_videos(self) -> int:
        return int(self.video_ids.numel())

    def accuracy(self) -> dict[int, float]:
        return metrics.topk_accuracy(self.probs, self.labels, (1, 5))


@torch.no_grad()
def evaluate(ctx: RunContext, model: nn.Module, loader, num_classes: int, desc: str) -> EvalResult:
    """Multi-clip evaluation of every video of ``loader``'s dataset, exactly once.

    Each process scores its shard; the per-video probabilities are gathered by video id, so the
    DistributedSampler's padding copies are counted once. Pass the plain (unwrapped) model: the
    shards may differ in length by a batch, and DDP's forward would wait for the other processes.
    """
    cfg: ClassifyConfig = ctx.cfg
    device, dtype = ctx.device, amp_dtype(cfg.amp, ctx.device)
    model.eval()
    acc = metrics.VideoScoreAccumulator(num_classes)
    failures: list = []
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
               disable=not (ctx.dist.is_main and cfg.progress))
    for batch in bar:
        clips, labels, ids, bad = batch_parts(batch, device)     # [B, C, 3, T, S, S]
        failures.extend(tuple(f) for f in bad)
        if clips.shape[0] == 0:
            continue
        b, c = clips.shape[:2]
        with autocast(device, dtype):
            logits = model(clips.flatten(0, 1))                   # [B*C, classes]
        probs = metrics.clip_softmax_average(logits.view(b, c, -1),    # [B, classes]
                                             batch.get("clip_mask"))
        acc.add(ids, probs, labels.tolist())
    merged = metrics.VideoScoreAccumulator(num_classes)
    for state in all_gather_objects(acc.state()):
        merged.merge(metrics.VideoScoreAccumulator.from_state(state, num_classes))
    failures = sorted({f for per_rank in all_gather_objects(failures) for f in per_rank})
    ids, probs, labels = merged.result()
    return EvalResult(ids, probs, labels, num_listed=len(loader.dataset), failures=failures)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def make_checkpoint(plain: Classifier, optimizer, scaler, cfg: ClassifyConfig, epoch: int,
                    plateau: PlateauState, selection: dict, class_names: list) -> dict:
    """This project's checkpoint format, kind "classifier" (model keys backbone.* and fc.*)."""
    return {
        "format": ckpt_io.FORMAT, "format_version": ckpt_io.FORMAT_VERSION,
        "model": plain.state_dict(),
        "meta": {"backbone": cfg.backbone, "width": cfg.width, "color": cfg.data.color,
                 "kind": "classifier", "job": job_name(cfg), "clip_len": cfg.data.clip_len,
                 "num_classes": len(class_names), "class_names": list(class_names)},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "schedule": plateau.state_dict(), "selection": dict(selection),
        "epoch": epoch, "step": 0, "config": config_mod.to_dict(cfg),
        "rng": ckpt_io.rng_state(),
    }


def job_name(cfg: ClassifyConfig) -> str:
    return "linear" if isinstance(cfg, LinearConfig) else "finetune"


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------

@dataclass
class FitOutcome:
    epochs_run: int
    stopped_because: str             # "epochs" or "min_lr"
    selection: "Selection"


@dataclass
class Selection:
    """Model selection state: the rule, the selected epoch and what it keeps of that epoch."""

    rule: str                        # "val", "last" or "best_test"
    epoch: int | None = None
    best: float = -math.inf          # top-1 of the selected epoch on val (or test for best_test)
    state: dict | None = None        # select=val: CPU state dict of the selected epoch
    test: EvalResult | None = None   # select=best_test: that epoch's test evaluation

    @property
    def val_top1(self) -> float | None:
        return self.best if self.rule == "val" and self.epoch is not None else None

    def as_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.epoch,
                "metric": None if self.best == -math.inf else self.best}


def run(cfg: ClassifyConfig) -> dict:
    """Train and test a classifier as configured; returns the results dict (also results.json)."""
    title = "linear evaluation" if isinstance(cfg, LinearConfig) else "full finetuning"
    return run_job(cfg, title, _run)


def _run(cfg: ClassifyConfig, ctx: RunContext) -> dict:
    started = time.time()
    data = build_data(cfg, ctx)
    seed_everything(cfg.seed)
    plain = build_classifier(cfg, len(data.class_names))
    init = init_backbone(plain.backbone, cfg, ctx.logger)
    ctx.commit()   # start-up succeeded: from here on the run folder is written
    write_subsets(ctx, data)
    linear = isinstance(cfg, LinearConfig)
    if linear:
        plain.freeze_backbone()
    plain.to(ctx.device)
    snapshot = backbone_snapshot(plain.backbone) if linear else None
    model: nn.Module = plain
    if ctx.dist.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(plain, device_ids=ids)
    trainable = [p for p in plain.parameters() if p.requires_grad]
    ctx.logger.info(f"{job_name(cfg)}: {sum(p.numel() for p in trainable):,} trainable of "
                    f"{sum(p.numel() for p in plain.parameters()):,} parameters; selection "
                    f"{SELECT_LABELS[cfg.select]}")
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(ctx.device, amp_dtype(cfg.amp, ctx.device))
    outcome = _fit(ctx, model, plain, optimizer, scaler, data)
    if linear:
        check_backbone_unchanged(plain.backbone, snapshot, include_buffers=cfg.bn_mode == "frozen")
        ctx.logger.info("frozen-backbone check passed: backbone parameters"
                        + (" and BatchNorm statistics" if cfg.bn_mode == "frozen" else "")
                        + " are unchanged")
    selection = outcome.selection
    if selection.test is not None:
        test = selection.test
    else:
        if selection.state is not None:
            plain.load_state_dict(selection.state, strict=True)
        test = evaluate(ctx, plain, data.test_loader, len(data.class_names), "test")
    results = build_results(cfg, data, init, outcome, test, time.time() - started)
    if ctx.dist.is_main:
        write_outputs(ctx, results, test, data.class_names)
    return results


def _fit(ctx: RunContext, model: nn.Module, plain: Classifier, optimizer, scaler,
         data: ClassifyData) -> FitOutcome:
    """The epoch loop: train, plateau schedule, validation / selection, checkpoints."""
    cfg: ClassifyConfig = ctx.cfg
    plateau = PlateauState()
    selection = Selection(cfg.select)
    stopped_because = "epochs"
    epoch = -1
    for epoch in range(cfg.epochs):
        set_lr(optimizer, cfg.lr * plateau.scale)
        data.train_sampler.set_epoch(epoch)
        started = time.perf_counter()
        stats = train_one_epoch(ctx, model, plain, data.train_loader, optimizer, scaler, epoch)
        lr = optimizer.param_groups[0]["lr"]
        plateau, lr_too_low = classifier_update(
            plateau, stats.loss, lr, base_lr=cfg.lr, patience=cfg.plateau_patience, factor=0.1,
            min_lr=cfg.min_lr, rule=cfg.lr_rule)
        record = {"epoch": epoch, "lr": lr, "loss": stats.loss, "train_clip_acc": stats.accuracy,
                  "steps": stats.steps, "skipped_videos": len(stats.failures),
                  "time": time.time()}
        eval_now = (epoch + 1) % cfg.eval_every_epochs == 0 or lr_too_low or epoch == cfg.epochs - 1
        improved = _select(ctx, plain, data, selection, epoch, eval_now, record)
        record["epoch_seconds"] = time.perf_counter() - started
        _log_epoch(ctx, record, stats)
        if ctx.dist.is_main:
            ckpt = make_checkpoint(plain, optimizer, scaler, cfg, epoch + 1, plateau,
                                   selection.as_dict(), data.class_names)
            ckpt_io.atomic_save(ckpt, ctx.run_dir / "checkpoints" / "latest.pth")
            if improved:
                ckpt_io.atomic_save(ckpt, ctx.run_dir / "checkpoints" / "best.pth")
        if lr_too_low:
            stopped_because = "min_lr"
            ctx.logger.info(f"lr {cfg.lr * plateau.scale:.1e} (epoch {epoch + 1}: {lr:.1e}) fell "
                            f"below min_lr {cfg.min_lr:.1e} (--lr-rule {cfg.lr_rule}): stopping "
                            f"after epoch {epoch + 1}")
            break
    return FitOutcome(epochs_run=epoch + 1, stopped_because=stopped_because, selection=selection)


def _select(ctx: RunContext, plain: Classifier, data: ClassifyData, selection: Selection,
            epoch: int, eval_now: bool, record: dict) -> bool:
    """Apply the selection rule after an epoch; True when this epoch becomes the selected one."""
    if selection.rule == "last":
        selection.epoch = epoch
        return True
    if not eval_now:
        return False
    split, loader = (("val", data.val_loader) if selection.rule == "val"
                     else ("test", data.test_loader))
    result = evaluate(ctx, plain, loader, len(data.class_names), f"{split} {epoch + 1}")
    top1 = result.accuracy()[1]
    record[f"{split}_top1"] = top1
    ctx.tb.scalars({"top1": top1}, epoch, f"{split}/")
    if top1 <= selection.best:        # ties keep the earlier epoch
        return False
    selection.epoch, selection.best = epoch, top1
    if selection.rule == "val":
        selection.state = _cpu_state(plain)
    else:
        selection.test = result
    return True


def _log_epoch(ctx: RunContext, record: dict, stats: EpochStats) -> None:
    ctx.jsonl.write(record)
    ctx.tb.scalars({"loss": stats.loss, "clip_accuracy": stats.accuracy, "lr": record["lr"]},
                   record["epoch"], "train/")
    # epochs are counted from 1 in messages (log.jsonl keeps the 0-based index)
    epochs = ctx.cfg.epochs
    ctx.logger.info(f"epoch {record['epoch'] + 1}/{epochs}: loss {stats.loss:.4f}, train clip acc "
                    f"{stats.accuracy:.1f}%, lr {record['lr']:.1e}"
                    + "".join(f", {k} {v:.2f}%" for k, v in record.items() if k.endswith("_top1"))
                    + " | " + eta_text(record["epoch"] + 1, epochs, record["epoch_seconds"]))
    if stats.failures:
        ctx.logger.warning(f"epoch {record['epoch'] + 1}: {len(stats.failures)} videos failed to "
                           "decode and were replaced by the next listed video:\n  "
                           + "\n  ".join(f"{p}: {r}" for p, r in stats.failures))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def protocol_text(cfg: ClassifyConfig) -> str:
    """One sentence stating the protocol, written into results.json."""
    d = cfg.data
    if isinstance(cfg, LinearConfig):
        what = ("linear probe (frozen backbone, BatchNorm "
                + ("in eval mode" if cfg.bn_mode == "frozen" else
                   "in train mode: running statistics updated, as the release") + ")")
    else:
        what = f"full finetuning (all layers, dropout {cfg.dropout:g})"
    val = ""
    if cfg.select == "val":
        val_clips = cfg.val_clips or cfg.num_test_clips
        val = (f"; validation: {cfg.val_fraction:g} of each class of the train split held out "
               f"(seed {cfg.seed}), {val_clips} clips/video")
    rule = (f"/10 each time {cfg.plateau_patience} epochs (counted since the last drop, not "
            f"reset by an improvement: the release's rule) had a training loss above the best, "
            f"stop after the first epoch trained below {cfg.min_lr:g}" if cfg.lr_rule == "release"
            else f"/10 after {cfg.plateau_patience} consecutive epochs without training-loss "
            f"improvement, stop before an lr below {cfg.min_lr:g}")
    return (f"{what}; Adam lr {cfg.lr:g}, {rule}, at most {cfg.epochs} epochs; "
            f"train clips {d.clip_len} frames stride {d.train_stride}, weak augmentation; test: "
            f"{cfg.num_test_clips} clips/video, centre crop {d.eval_crop:g} -> {d.resolution}px, softmax "
            f"averaged per video; model selection: {SELECT_LABELS[cfg.select]}{val}")


def build_results(cfg: ClassifyConfig, data: ClassifyData, init: dict, outcome: FitOutcome,
                  test: EvalResult, elapsed: float) -> dict:
    acc = test.accuracy()
    notes = []
    num_classes = len(data.class_names)
    if num_classes < 5:
        notes.append(f"top5 is computed as top{num_classes}: only {num_classes} classes")
    if cfg.label_fraction < 1.0 and cfg.select == "val":
        notes.append(f"model selection used {len(data.val_videos)} labelled validation videos on "
                     f"top of the {cfg.label_fraction:g} label fraction; --select last keeps to "
                     "the fraction strictly")
    if test.num_videos != len(data.test_videos):
        notes.append(f"{len(data.test_videos) - test.num_videos} test videos could not be "
                     "evaluated (see failed_videos); accuracies are over the evaluated ones")
    d = cfg.data
    results = {
        # percentages to 0.01 points; the exact counts of correct videos beside them
        "job": job_name(cfg), "top1": metrics.round_percent(acc[1]),
        "top5": metrics.round_percent(acc[5]),
        **{f"top{k}_correct": c
           for k, c in metrics.topk_correct(test.probs, test.labels, (1, 5)).items()},
        "num_videos": test.num_videos, "num_videos_listed": len(data.test_videos),
        "failed_videos": [list(f) for f in test.failures],
        "protocol": protocol_text(cfg),
        "checkpoint": init["checkpoint"], "init": init["init"], "init_source": init["init_source"],
        "dataset": d.dataset, "data_root": d.data_root, "split": d.split, "seed": cfg.seed,
        "select": SELECT_LABELS[cfg.select], "selected_epoch": outcome.selection.epoch,
        "val_top1": metrics.round_percent(outcome.selection.val_top1),
        "selected_checkpoint": ("checkpoints/best.pth" if outcome.selection.epoch is not None
                                else None),
        "label_fraction": cfg.label_fraction,
        "val_fraction": cfg.val_fraction if cfg.select == "val" else 0.0,
        "num_train_videos": len(data.train_videos), "num_val_videos": len(data.val_videos),
        "num_classes": num_classes, "num_test_clips": cfg.num_test_clips,
        "epochs_run": outcome.epochs_run, "stopped_because": outcome.stopped_because,
        "backbone": cfg.backbone, "width": cfg.width, "color": d.color, "resolution": d.resolution,
        "lr": cfg.lr, "notes": notes, "elapsed_s": round(elapsed, 1),
    }
    if isinstance(cfg, LinearConfig):
        results["bn_mode"] = cfg.bn_mode
    else:
        results["dropout"] = cfg.dropout
    return results


def summary_line(results: dict) -> str:
    return (f"{results['job']} | {results['dataset']} split {results['split']} | init "
            f"{results['init']}{' ' + results['checkpoint'] if results['checkpoint'] else ''} | "
            f"labels {results['label_fraction']:g} | select {results['select'].split(' ')[0]}"
            f" | top1 {results['top1']:.2f}% top5 {results['top5']:.2f}% over "
            f"{results['num_videos']} videos x {results['num_test_clips']} clips | seed "
            f"{results['seed']}")


def write_outputs(ctx: RunContext, results: dict, test: EvalResult, class_names: list) -> None:
    """results.json, per-class accuracy CSV, confusion matrix CSV + PNG (also in TensorBoard)."""
    from engine import visualize
    run_dir = ctx.run_dir
    ctx.logger.info(f"evaluated {test.num_videos} / {results['num_videos_listed']} test videos")
    if test.failures:
        ctx.logger.warning("test videos that failed to decode:\n  "
                           + "\n  ".join(f"{p}: {r}" for p, r in test.failures))
    preds = test.probs.argmax(1).numpy()
    labels = test.labels.numpy()
    per_class, support = metrics.per_class_accuracy(preds, labels, len(class_names))
    cm = metrics.confusion(preds, labels, len(class_names))
    metrics.write_per_class_csv(run_dir / "per_class_accuracy.csv", class_names, per_class, support)
    metrics.write_confusion_csv(run_dir / "confusion_matrix.csv", class_names, cm)
    init = f"checkpoint {results['checkpoint']}" if results["checkpoint"] else "random init"
    title = (f"{results['job']}, {init}\n{results['dataset']} split {results['split']} test, "
             f"top-1 {results['top1']:.2f}%")
    visualize.save_figure(visualize.confusion_figure(cm, class_names, title),
                          run_dir / "confusion_matrix.png", ctx.tb.writer, "test/confusion_matrix")
    if ctx.tb.writer is not None:
        ctx.tb.scalars({"top1": results["top1"], "top5": results["top5"]}, 0, "test/")
    visualize.write_training_curves(run_dir, ctx.tb.writer)      # loss and lr per epoch
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    ctx.jsonl.write({"final": True, **{k: results[k] for k in ("top1", "top5", "num_videos")}})
    for note in results["notes"]:
        ctx.logger.info(f"note: {note}")
    ctx.logger.info(summary_line(results))
