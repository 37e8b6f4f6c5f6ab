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

What differs between the two protocols is decided in one place, :class:`Protocol`. The pieces
shared with pretraining (optimizer step, non-finite / bad-batch guard, DDP wrap) are in
engine.steps, the multi-clip evaluation in engine.evaluation, the backbone's initialisation in
models.weights, the label subsets in dataloaders.subsets, the run's data in engine.classify_data
and the reports in engine.classify_report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

import config as config_mod
from config import ClassifyConfig, LinearConfig
from engine import checkpoint as ckpt_io
from engine.classify_data import ClassifyData, build_data, write_subsets
from engine.classify_report import SELECT_LABELS, build_results, write_outputs
from engine.common import RunContext, amp_dtype, autocast, make_scaler, run_job, seed_everything
from engine.distributed import all_reduce_sum
from engine.errors import TrainingError
from engine.evaluation import EvalResult, batch_parts, evaluate
from engine.logging import eta_text
from engine.schedules import PlateauState, classifier_update, set_lr
from engine.steps import (epoch_steps, gather_failures, optimizer_step, progress_bar,
                          reduce_and_guard, warn_decode_failures, wrap_ddp)
from models import Classifier, build_initialised_backbone


# --------------------------------------------------------------------------------------------
# Linear probe or finetuning
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """Everything that separates linear evaluation from finetuning, decided once from the config.

    As MoCo's main_lincls.py: the linear probe freezes the backbone, keeps its BatchNorm layers in
    eval mode (unless ``bn_mode=train``, the release's behaviour) and checks at the end that the
    backbone did not change; finetuning trains every layer, with optional dropout before fc.
    """

    job: str                  # "linear" / "finetune": results.json, checkpoint meta, log lines
    title: str                # the run's banner
    frozen_backbone: bool     # no gradient into the backbone; checked unchanged at the end
    bn_eval: bool             # backbone BatchNorm in eval mode in training; buffers checked too
    dropout: float            # before fc
    summary: str              # first clause of results.json's protocol sentence
    result_fields: dict       # what results.json adds for this protocol

    @classmethod
    def from_config(cls, cfg: ClassifyConfig) -> "Protocol":
        if isinstance(cfg, LinearConfig):
            bn_eval = cfg.bn_mode == "frozen"
            bn = ("in eval mode" if bn_eval
                  else "in train mode: running statistics updated, as the release")
            return cls(job="linear", title="linear evaluation", frozen_backbone=True,
                       bn_eval=bn_eval, dropout=0.0,
                       summary=f"linear probe (frozen backbone, BatchNorm {bn})",
                       result_fields={"bn_mode": cfg.bn_mode})
        return cls(job="finetune", title="full finetuning", frozen_backbone=False, bn_eval=False,
                   dropout=cfg.dropout,
                   summary=f"full finetuning (all layers, dropout {cfg.dropout:g})",
                   result_fields={"dropout": cfg.dropout})

    def prepare(self, plain: Classifier, device: torch.device) -> dict | None:
        """Freeze the backbone (linear) and move the classifier to ``device``; returns the
        backbone snapshot that :meth:`check_unchanged` compares with (None: nothing to check)."""
        if self.frozen_backbone:
            plain.freeze_backbone()
        plain.to(device)
        return cpu_state(plain.backbone) if self.frozen_backbone else None

    def set_train_mode(self, model: nn.Module, plain: Classifier) -> None:
        """model.train(), except a backbone whose BatchNorm must stay in eval mode."""
        model.train()
        if self.bn_eval:
            plain.backbone.eval()

    def check_unchanged(self, plain: Classifier, snapshot: dict | None, logger) -> None:
        """The end-of-run check of a frozen backbone (parameters; buffers too with bn_eval)."""
        if not self.frozen_backbone:
            return
        check_backbone_unchanged(plain.backbone, snapshot, include_buffers=self.bn_eval)
        logger.info("frozen-backbone check passed: backbone parameters"
                    + (" and BatchNorm statistics" if self.bn_eval else "") + " are unchanged")


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer of ``module``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def check_backbone_unchanged(backbone: nn.Module, snapshot: dict[str, torch.Tensor],
                             include_buffers: bool) -> None:
    """Linear-evaluation sanity check (as MoCo's): the frozen backbone must not have changed.

    Args:
        backbone: the backbone after training.
        snapshot: :func:`cpu_state` of the backbone before training.
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


# --------------------------------------------------------------------------------------------
# One training epoch
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
    steps_total = epoch_steps(loader, cfg.max_steps_per_epoch)
    Protocol.from_config(cfg).set_train_mode(model, plain)
    criterion = nn.CrossEntropyLoss()
    sums = torch.zeros(3, dtype=torch.float64)                  # loss sum, correct, clips
    failures: list = []
    bar = progress_bar(ctx, f"train {epoch + 1}/{cfg.epochs}", total=steps_total)
    step = 0
    for batch in loader:
        clips, labels, _ids, bad = batch_parts(batch, device)    # [B, 3, T, S, S], [B]
        with autocast(device, dtype):
            logits = model(clips)                                 # [B, classes]
        loss = criterion(logits.float(), labels)
        _guard(cfg, loss, bad, clips.shape[0], f"epoch {epoch + 1}, step {step + 1}")
        optimizer_step(loss, optimizer, scaler)
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
    return EpochStats(loss=total[0].item() / clips_seen,
                      accuracy=100.0 * total[1].item() / clips_seen, steps=step,
                      failures=gather_failures(failures))


def _guard(cfg: ClassifyConfig, loss: torch.Tensor, bad: list, batch_size: int,
           where: str) -> None:
    """Stop before the update when a process's loss is non-finite or its batch too damaged."""
    reduce_and_guard(
        loss.reshape(1), bad, batch_size, cfg.data.max_bad_fraction,
        non_finite=lambda _sums: (f"non-finite classification loss at {where}; nothing was "
                                  "saved from this epoch. Try --amp off or a lower --lr."),
        bad_batch=lambda: (f"more than {cfg.data.max_bad_fraction:.0%} of a batch failed to "
                           f"decode at {where}: " + "; ".join(f"{p}: {r}" for p, r in bad)))


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def make_checkpoint(plain: Classifier, optimizer, scaler, cfg: ClassifyConfig, epoch: int,
                    plateau: PlateauState, selection: dict, class_names: list,
                    device: torch.device | None = None) -> dict:
    """This project's checkpoint format, kind "classifier" (model keys backbone.* and fc.*)."""
    return {
        "format": ckpt_io.FORMAT, "format_version": ckpt_io.FORMAT_VERSION,
        "model": plain.state_dict(),
        "meta": {"backbone": cfg.backbone, "width": cfg.width, "color": cfg.data.color,
                 "kind": "classifier", "job": Protocol.from_config(cfg).job,
                 "clip_len": cfg.data.clip_len,
                 "num_classes": len(class_names), "class_names": list(class_names)},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "schedule": plateau.state_dict(), "selection": dict(selection),
        "epoch": epoch, "step": 0, "config": config_mod.to_dict(cfg),
        "rng": ckpt_io.rng_state(device),
    }


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
    return run_job(cfg, Protocol.from_config(cfg).title, _run)


def _run(cfg: ClassifyConfig, ctx: RunContext) -> dict:
    started = time.time()
    protocol = Protocol.from_config(cfg)
    data = build_data(cfg, ctx)
    seed_everything(cfg.seed)
    backbone, init = build_initialised_backbone(cfg, ctx.logger, ckpt_io.require_finite)
    plain = Classifier(backbone, len(data.class_names), dropout=protocol.dropout)
    ctx.commit()   # start-up succeeded: from here on the run folder is written
    write_subsets(ctx, data)
    snapshot = protocol.prepare(plain, ctx.device)
    model = wrap_ddp(plain, ctx.device) if ctx.dist.distributed else plain
    trainable = [p for p in plain.parameters() if p.requires_grad]
    ctx.logger.info(f"{protocol.job}: {sum(p.numel() for p in trainable):,} trainable of "
                    f"{sum(p.numel() for p in plain.parameters()):,} parameters; selection "
                    f"{SELECT_LABELS[cfg.select]}")
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(ctx.device, amp_dtype(cfg.amp, ctx.device))
    outcome = _fit(ctx, model, plain, optimizer, scaler, data)
    protocol.check_unchanged(plain, snapshot, ctx.logger)
    selection = outcome.selection
    if selection.test is not None:
        test = selection.test
    else:
        if selection.state is not None:
            plain.load_state_dict(selection.state, strict=True)
        test = evaluate(ctx, plain, data.test_loader, len(data.class_names), "test")
    results = build_results(cfg, protocol, data, init, outcome, test, time.time() - started)
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
                                   selection.as_dict(), data.class_names, ctx.device)
            ckpt_io.atomic_save(ckpt, ctx.run_dir / "checkpoints" / "latest.pth")
            if improved:
                ckpt_io.atomic_save(ckpt, ctx.run_dir / "checkpoints" / "best.pth")
            ctx.result_saved()
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
        selection.state = cpu_state(plain)
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
    warn_decode_failures(ctx.logger, record["epoch"], stats.failures)


