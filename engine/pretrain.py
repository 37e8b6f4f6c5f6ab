"""TCLR pretraining: model/optimizer set-up, the epoch loop, checkpoints and resume.

The release's recipe (TCLR_SPEC section 6) by default: Adam 1e-3, weight decay 1e-9, five warm-up
epochs, lr /10 after 9 epochs without improvement of the epoch's mean loss, fp16 autocast on CUDA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

import config as config_mod
from config import PretrainConfig
from engine import checkpoint as ckpt_io
from engine.common import (RunContext, amp_dtype, autocast, ensure_dataset, make_loader,
                           make_scaler, run_job, seed_everything)
from engine.distributed import all_gather_objects, gather_batch
from engine.errors import TrainingError
from engine.logging import Throughput, eta_text, steps_text
from engine.preemption import StopFlag
from engine.steps import (epoch_steps, gather_failures, optimizer_step, progress_bar,
                          reduce_and_guard, unwrap, warn_decode_failures, wrap_ddp)
from engine.schedules import PlateauState, cosine_lr, plateau_update, release_lr, set_lr
from losses import TERM_NAMES

TERMS = ("total", *TERM_NAMES)


# --------------------------------------------------------------------------------------------
# State that a checkpoint carries besides model/optimizer/scaler
# --------------------------------------------------------------------------------------------

@dataclass
class TrainState:
    epoch: int = 0                 # epoch in progress (or the next one to start)
    step_in_epoch: int = 0         # steps of `epoch` already done
    global_step: int = 0
    plateau: PlateauState = field(default_factory=PlateauState)
    best_loss: float = math.inf
    epoch_sums: list = field(default_factory=lambda: [0.0] * len(TERMS))  # partial epoch sums
    epoch_failures: list = field(default_factory=list)  # [path, reason] of this epoch so far
    monitor_history: list = field(default_factory=list)  # engine.monitor's dicts, oldest first
    best_monitor: float = -math.inf                     # best monitor Recall@1 (--keep-best)

    def record_step(self, mean_terms: list[float], failures: list) -> None:
        """A step is done: count it, add its mean loss terms and its decode failures."""
        self.step_in_epoch += 1
        self.global_step += 1
        self.epoch_sums = [s + v for s, v in zip(self.epoch_sums, mean_terms)]
        self.epoch_failures.extend(tuple(f) for f in failures)

    def next_epoch(self) -> None:
        """The epoch is done: start the next one with empty sums."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_sums = [0.0] * len(TERMS)
        self.epoch_failures = []

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "plateau": self.plateau.state_dict(),
                "best_loss": self.best_loss, "epoch_sums": list(self.epoch_sums),
                "epoch_failures": [list(f) for f in self.epoch_failures],
                "monitor_history": list(self.monitor_history), "best_monitor": self.best_monitor}

    @classmethod
    def from_state_dict(cls, d: dict) -> "TrainState":
        return cls(epoch=int(d["epoch"]), step_in_epoch=int(d["step_in_epoch"]),
                   global_step=int(d["global_step"]),
                   plateau=PlateauState.from_state_dict(d["plateau"]),
                   best_loss=float(d["best_loss"]), epoch_sums=list(d["epoch_sums"]),
                   epoch_failures=[tuple(f) for f in d["epoch_failures"]],
                   # allowed to be missing: checkpoints written before the monitor existed
                   monitor_history=list(d.get("monitor_history", [])),
                   best_monitor=float(d.get("best_monitor", -math.inf)))


# --------------------------------------------------------------------------------------------
# Model and checkpoints
# --------------------------------------------------------------------------------------------

def build_model(cfg: PretrainConfig) -> nn.Module:
    """Backbone + projection head as a TCLRModel (not yet moved or wrapped)."""
    from models import ProjectionHead, TCLRModel, build_backbone
    backbone = build_backbone(cfg.backbone, width=cfg.width)
    head = ProjectionHead(backbone.out_channels, out_dim=cfg.proj_dim)
    return TCLRModel(backbone, head, fused=cfg.fused_forward)


def make_checkpoint(model: nn.Module, optimizer, scaler, state: TrainState,
                    cfg: PretrainConfig, rng_states: list) -> dict:
    return {
        "format": ckpt_io.FORMAT, "format_version": ckpt_io.FORMAT_VERSION,
        "model": unwrap(model).state_dict(),
        "meta": {"backbone": cfg.backbone, "width": cfg.width, "color": cfg.data.color,
                 "kind": "pretrain", "clip_len": cfg.data.clip_len},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "train_state": state.state_dict(), "epoch": state.epoch, "step": state.global_step,
        "config": config_mod.to_dict(cfg), "rng": rng_states,
    }


def resume_path(cfg: PretrainConfig) -> Path | None:
    """The checkpoint to resume from: --resume auto -> latest in out_dir if any; a path -> it."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        from engine.rundir import auto_resume_checkpoint
        return auto_resume_checkpoint(Path(cfg.out_dir))
    path = Path(cfg.resume)
    if path.is_dir():
        raise ckpt_io.CheckpointError(f"--resume {cfg.resume} is a directory; pass a checkpoint "
                                      "file, or --resume auto with --out-dir set to that run")
    if not path.is_file():
        raise ckpt_io.CheckpointError(f"--resume {cfg.resume}: no such checkpoint file")
    return path


def restore(path: Path, model: nn.Module, optimizer, scaler, cfg: PretrainConfig,
            rank: int, logger=None, device: torch.device | None = None) -> TrainState:
    """Load a pretraining checkpoint into model/optimizer/scaler; return the training state.

    ``rank``'s saved RNG states are restored (the CUDA one only for a CUDA ``device``). With a
    ``logger``, warn when the checkpoint was trained on other data (warn_other_data), across a
    precision change (load_scaler_state) and when the CUDA RNG could not be restored.

    Raises:
        CheckpointError: unreadable, not a pretraining checkpoint, another backbone or width,
            another batch size / clip length / stride / resolution without
            --allow-config-change, or weights / optimizer state that are already non-finite
            (the message points to an earlier checkpoint).
    """
    try:
        ckpt = ckpt_io.load_checkpoint(path)
    except ckpt_io.CheckpointError as exc:
        if cfg.resume != "auto":
            raise
        from engine.rundir import unusable_latest
        raise ckpt_io.CheckpointError(unusable_latest(Path(cfg.out_dir),
                                                      f"{path} cannot be read ({exc})")) from None
    meta = ckpt.get("meta", {})
    if meta.get("kind") != "pretrain":
        raise ckpt_io.CheckpointError(f"{path} is a {meta.get('kind')!r} checkpoint, not a "
                                          "pretraining one; it cannot be resumed")
    for key in ("backbone", "width"):
        if meta.get(key) != getattr(cfg, key):
            raise ckpt_io.CheckpointError(
                f"{path} was written with {key}={meta.get(key)!r} but this run has "
                f"{key}={getattr(cfg, key)!r}; pass the same --{key} or another --out-dir")
    check_same_training(path, ckpt.get("config", {}), cfg)
    check_finite_state(path, ckpt, cfg)
    if logger is not None:
        warn_other_data(path, ckpt.get("config", {}), cfg, logger)
    unwrap(model).load_state_dict(ckpt["model"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    note = load_scaler_state(scaler, ckpt.get("scaler") or {}, path)
    rngs = ckpt.get("rng") or []
    if rank < len(rngs):
        rng_note = ckpt_io.set_rng_state(rngs[rank], device)
        note = " ".join(n for n in (note, rng_note) if n)
    if note and logger is not None:
        logger.warning(note)
    return TrainState.from_state_dict(ckpt["train_state"])


# Settings a resumed run must share with its checkpoint to be the same training: another value
# changes what a step computes (the loss terms' clips, the batch's negatives, the objective: an
# ablation variant resumed into another's folder would have mixed two recipes in one backbone).
RESUME_FIXED = (("batch_size", None), ("clip_len", "data"), ("sparse_stride", "data"),
                ("resolution", "data"), ("temperature", None),
                *(("w_" + term, None) for term in TERM_NAMES))


def check_same_training(path: Path, saved_config: dict, cfg: PretrainConfig) -> None:
    """Refuse to resume with another batch size, clip length, sparse stride, resolution,
    temperature or loss weights than the checkpoint's, unless --allow-config-change true."""
    if cfg.allow_config_change:
        return
    differ = []
    for key, section in RESUME_FIXED:
        saved = (saved_config.get(section, {}) if section else saved_config).get(key)
        now = getattr(cfg.data if section else cfg, key)
        if saved is not None and saved != now:
            differ.append(f"{key} {saved} -> {now}")
    if differ:
        flags = " ".join(f"--{d.split()[0].replace('_', '-')} {d.split()[1]}" for d in differ)
        raise ckpt_io.CheckpointError(
            f"--resume {path}: the checkpoint was trained with other settings ({', '.join(differ)})"
            f"; pass the checkpoint's values ({flags}) to continue the same training, or "
            "--allow-config-change true to go on with the new ones")


def check_finite_state(path: Path, ckpt: dict, cfg: PretrainConfig) -> None:
    """A checkpoint whose weights or optimizer state already hold NaN/inf cannot be continued:
    a lower --lr would not help. Name an earlier checkpoint instead."""
    bad, _ = ckpt_io.nonfinite_tensors(ckpt.get("model", {}))
    opt_state = ckpt.get("optimizer", {}).get("state", {})
    for index, entry in opt_state.items():
        bad += [f"optimizer state {index}.{k}" for k, v in entry.items()
                if isinstance(v, torch.Tensor) and v.is_floating_point()
                and not bool(torch.isfinite(v).all())]
    if not bad:
        return
    folder = Path(path).parent
    earlier = sorted((p for p in folder.glob("*.pth") if p.resolve() != Path(path).resolve()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    hint = (f"resume from an earlier one, e.g. --resume {earlier[0]} (present: "
            f"{', '.join(p.name for p in earlier)})" if earlier
            else "no other checkpoint is in its folder: start again with --overwrite true")
    raise ckpt_io.CheckpointError(
        f"--resume {path}: the checkpoint itself is bad: {len(bad)} tensor(s) hold NaN or inf "
        f"(first {bad[0]!r}), so the run cannot continue from it (a lower --lr would not help); "
        f"{hint}")


def load_scaler_state(scaler, saved: dict, path: Path) -> str | None:
    """Load a checkpoint's grad-scaler state when both it and ``scaler`` have one.

    A disabled scaler (bf16, float32, CPU) saves ``{}``; an enabled one (fp16) refuses to load
    that, and a disabled one has nothing to take from an enabled one's state. When the precision
    changed across the resume the scaler keeps its fresh state (an fp16 run starts at scale 2**16
    and finds its level within a few steps) and the returned sentence says so for the log.
    """
    if saved and scaler.is_enabled():
        scaler.load_state_dict(saved)
        return None
    if not saved and not scaler.is_enabled():
        return None
    then, now = (("fp16 (grad scaler on)", "bf16/float32 (no grad scaler)") if saved
                 else ("bf16/float32 or CPU (no grad scaler)", "fp16 (grad scaler on)"))
    return (f"resuming {path} across a precision change: it was trained with {then}, this run "
            f"uses {now}; the grad scaler starts fresh")


def warn_other_data(path: Path, saved_config: dict, cfg: PretrainConfig, logger) -> None:
    """Say so when a resumed checkpoint was trained on another dataset folder or split."""
    saved = saved_config.get("data", {})
    d = cfg.data
    then = (str(Path(saved.get("data_root", d.data_root)).resolve()), saved.get("split", d.split))
    now = (str(Path(d.data_root).resolve()), d.split)
    if then != now:
        logger.warning(f"{path} was trained on {then[0]} split {then[1]}, this run reads "
                           f"{now[0]} split {now[1]}: the resumed run is not the exact "
                           "continuation of the checkpoint's (that needs the same data)")


# --------------------------------------------------------------------------------------------
# One step, one epoch
# --------------------------------------------------------------------------------------------

def batch_clips(batch: dict, device: torch.device, cfg: PretrainConfig) -> torch.Tensor:
    """The batch's clips on ``device`` as float [B, V, 1+K, C, T, S, S].

    With ``augment_on='device'`` the workers ship raw uint8 clips and the parameters they drew;
    the augmentation runs here, batched, on the training device.
    """
    from dataloaders.batching import pretrain_input
    return pretrain_input(batch, device, size=cfg.data.resolution, color=cfg.data.color,
                          color_ops=cfg.data.color_ops)


def forward_loss(model: nn.Module, clips: torch.Tensor, device: torch.device,
                 dtype: torch.dtype | None, temperature: float = 0.1,
                 weights: dict[str, float] | None = None, loss_fn=None) -> dict:
    """The forward half of a pretraining step: model under autocast, then the TCLR terms.

    Args:
        model: a TCLRModel (possibly wrapped by DDP / torch.compile).
        clips: float [B, V, 1+K, C, T, S, S] on ``device``.
        dtype: autocast dtype (``amp_dtype``), None = float32.
        temperature, weights: as ``losses.tclr_loss`` takes them.
        loss_fn: a function with ``losses.tclr_loss``'s signature; None = ``losses.tclr_loss``,
            looked up at every call (tests replace it there).

    Returns:
        The loss function's dict of 0-dim tensors ("total" and the four terms).
    """
    if loss_fn is None:
        import losses
        loss_fn = losses.tclr_loss
    with autocast(device, dtype):
        outputs = model(clips)
    # The release (DataParallel) contrasted each video against the whole global batch: gather
    # the representations of every process along the batch axis (dim 1 of each output).
    sparse_global, sparse_local, dense_global = (gather_batch(o, dim=1) for o in outputs)
    return loss_fn(sparse_global, sparse_local, dense_global, temperature=temperature,
                   weights=weights)


def train_step(model: nn.Module, clips: torch.Tensor, optimizer, scaler, device: torch.device,
               dtype: torch.dtype | None, temperature: float = 0.1,
               weights: dict[str, float] | None = None, loss_fn=None) -> dict:
    """One whole pretraining step without the loop's checks (benchmarks, tests).

    ``train_one_epoch`` runs the same two halves with its non-finite and bad-video checks between
    them. Arguments as ``forward_loss``; returns its dict of terms.
    """
    terms = forward_loss(model, clips, device, dtype, temperature, weights, loss_fn)
    optimizer_step(terms["total"], optimizer, scaler)
    return terms


def _lr_for(cfg: PretrainConfig, state: TrainState, step_frac: float) -> float:
    if cfg.schedule == "cosine":
        return cosine_lr(state.epoch, step_frac, cfg.lr, cfg.warmup_factors, cfg.epochs)
    return release_lr(state.epoch, cfg.lr, cfg.warmup_factors, state.plateau)


@dataclass
class EpochResult:
    means: dict
    steps: int
    samples_per_s: float
    data_wait: float
    interrupted: bool
    seconds: float = 0.0       # wall time of this (part of the) epoch


def train_one_epoch(ctx: RunContext, model: nn.Module, loader, optimizer, scaler,
                    state: TrainState, stop: StopFlag, save_fn) -> EpochResult:
    """Run (the rest of) epoch ``state.epoch``; update ``state`` after every step.

    ``save_fn(names)`` writes the named checkpoints (every ``save_every_steps`` steps); ``stop``
    ends the epoch early, after a complete step, when a signal asked for it.
    """
    cfg: PretrainConfig = ctx.cfg
    device, dtype = ctx.device, amp_dtype(cfg.amp, ctx.device)
    weights = config_mod.loss_weights(cfg)
    steps_total = epoch_steps(loader, cfg.max_steps_per_epoch, done=state.step_in_epoch)
    model.train()
    # epochs and steps are counted from 1 in every message: epoch N ends in epoch_000N.pth
    bar = progress_bar(ctx, f"epoch {state.epoch + 1}/{cfg.epochs}", total=steps_total,
                       initial=state.step_in_epoch)
    meter = Throughput(device)   # synchronises on CUDA: data_wait is time the GPU idled
    interrupted = False
    iterator = iter(loader)
    while state.step_in_epoch < steps_total:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except RuntimeError:
            if not stop.requested:
                raise
            interrupted = True   # a worker died from the same SIGTERM: stop with what is complete
            break
        meter.data_ready()
        set_lr(optimizer, _lr_for(cfg, state, state.step_in_epoch / max(1, steps_total)))
        clips = batch_clips(batch, device, cfg)                       # [B, V, 1+K, C, T, S, S]
        terms = forward_loss(model, clips, device, dtype, cfg.temperature, weights)
        failures = batch.get("failures", [])
        mean_terms, stop_now = _reduce_and_guard(ctx, state, terms, failures, clips.shape[0], stop)
        optimizer_step(terms["total"], optimizer, scaler)

        state.record_step(mean_terms, failures)
        meter.step_done(clips.shape[0] * ctx.dist.world_size)
        bar.set_postfix(loss=f"{mean_terms[0]:.3f}", sps=f"{meter.samples_per_s:.1f}")
        bar.update(1)
        _log_step(ctx, state, mean_terms, optimizer, meter)
        if stop_now:
            interrupted = True
            break
        if cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0:
            save_fn(("latest.pth",))
    bar.close()
    steps = max(1, state.step_in_epoch)
    return EpochResult(means={t: s / steps for t, s in zip(TERMS, state.epoch_sums)},
                       steps=state.step_in_epoch, samples_per_s=meter.samples_per_s,
                       data_wait=meter.data_wait, interrupted=interrupted,
                       seconds=time.perf_counter() - meter.t_start)


def _reduce_and_guard(ctx: RunContext, state: TrainState, terms: dict, failures: list,
                      batch_size: int, stop: StopFlag) -> tuple[list[float], bool]:
    """(the loss terms averaged over processes, whether any process was asked to stop); raises
    before the optimizer step when a term is non-finite or a batch had too many bad videos."""
    cfg: PretrainConfig = ctx.cfg
    world = ctx.dist.world_size
    where = f"epoch {state.epoch + 1}, step {state.step_in_epoch + 1}"

    def non_finite(sums: torch.Tensor) -> str:
        means = (sums / world).tolist()
        bad = {t: v for t, v in zip(TERMS, means) if not math.isfinite(v)}
        return (f"non-finite loss at {where} (global step {state.global_step + 1}): {bad}; all "
                f"terms: {dict(zip(TERMS, (round(v, 5) for v in means)))}. Nothing was saved "
                "from this step; the last good checkpoint is intact. Try --amp bf16 or off, or a "
                "lower --lr.")

    def bad_batch() -> str:
        listing = "\n  ".join(f"{p}: {r}" for p, r in failures) or "(on another process)"
        return (f"more than {cfg.data.max_bad_fraction:.0%} of a batch failed to decode at "
                f"{where}:\n  {listing}\nRun `python -m dataloaders.check --dataset "
                f"{cfg.data.dataset} --root {cfg.data.data_root}` to list every bad file.")

    values = torch.stack([terms[t].detach().float().reshape(()) for t in TERMS])
    sums, flags = reduce_and_guard(values, failures, batch_size, cfg.data.max_bad_fraction,
                                   non_finite=non_finite, bad_batch=bad_batch,
                                   flags=[float(stop.requested)])
    return (sums / world).tolist(), bool(flags[0] > 0)


def _log_step(ctx: RunContext, state: TrainState, mean_terms: list[float], optimizer,
              meter: Throughput) -> None:
    """TensorBoard scalars of the step, from the very first step, then every log_every_steps."""
    if ctx.dist.is_main and (state.global_step == 1
                             or state.global_step % max(1, ctx.cfg.log_every_steps) == 0):
        ctx.tb.scalars(dict(zip(TERMS, mean_terms)), state.global_step, "train/")
        ctx.tb.scalars({"lr": optimizer.param_groups[0]["lr"], "samples_per_s": meter.samples_per_s,
                        "data_wait_fraction": meter.data_wait}, state.global_step, "train/")


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------

def prepare_model(cfg: PretrainConfig, device: torch.device,
                  distributed: bool = False) -> tuple[nn.Module, nn.Module]:
    """The model as configured (seeded init, memory format, checkpointing, DDP, compile).

    Returns:
        (model to train, possibly wrapped; the plain module).
    """
    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if cfg.grad_checkpoint:
        unwrap(model).backbone.grad_checkpoint = True
    if distributed:
        model = wrap_ddp(model, device, sync_bn=cfg.sync_bn)
    plain = unwrap(model)
    if cfg.compile:
        model = torch.compile(model)
    return model, plain


def _build_data(cfg: PretrainConfig, ctx: RunContext):
    from dataloaders.batching import collate_pretrain
    from dataloaders.datasets import build_dataset
    from dataloaders.splits import build_video_list
    ensure_dataset(cfg, ctx.logger)
    d = cfg.data
    videos, classes = build_video_list(d.dataset, d.data_root, split=d.split, subset="train")
    dataset = build_dataset(d, "pretrain", videos, cfg.seed)
    if len(dataset) < cfg.batch_size:
        raise TrainingError(f"the {d.dataset} train list under {d.data_root} has {len(dataset)} "
                            f"videos, fewer than one global batch ({cfg.batch_size})")
    loader, sampler = make_loader(dataset, cfg, ctx.dist, train=True, collate_fn=collate_pretrain,
                                  min_last_batch=2)
    return loader, sampler, len(videos), len(classes)


def run(cfg: PretrainConfig) -> dict:
    """Pretrain as configured; return a summary dict (also written to the JSON-lines log)."""
    return run_job(cfg, "TCLR pretraining", _run)


def _run(cfg: PretrainConfig, ctx: RunContext) -> dict:
    loader, sampler, n_videos, n_classes = _build_data(cfg, ctx)
    from engine.monitor import build_monitor, epoch_text
    monitor = build_monitor(cfg, ctx)
    model, plain = prepare_model(cfg, ctx.device, ctx.dist.distributed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(ctx.device, amp_dtype(cfg.amp, ctx.device))
    state = TrainState()
    start = resume_path(cfg)
    if start is not None:
        state = restore(start, model, optimizer, scaler, cfg, ctx.dist.rank, ctx.logger,
                        ctx.device)
        ctx.logger.info(f"resumed from {start}: {state.epoch} epochs and {state.step_in_epoch} "
                        f"steps of epoch {state.epoch + 1} done, global step {state.global_step}")
    ctx.commit()   # start-up succeeded: from here on the run folder is written
    if start is not None and ctx.dist.is_main:
        dropped = ctx.jsonl.truncate(keep=lambda r: r.get("epoch", -1) < state.epoch)
        if dropped:
            ctx.logger.warning(f"{ctx.jsonl.path}: dropped {dropped} (a record cut by a kill, or "
                               f"epochs after the resumed checkpoint's) before appending")
    # From here a signal stops the run after a step, with a checkpoint: installed before the log
    # line that announces training, so a Ctrl-C that follows that line is never a KeyboardInterrupt
    stop = StopFlag()
    stop.install()
    ctx.logger.info(f"{n_videos} training videos in {n_classes} classes; "
                    f"{steps_text(len(loader), cfg.max_steps_per_epoch)} of {cfg.batch_size} "
                    f"videos ({cfg.per_device_batch} per process), {cfg.epochs} epochs; "
                    f"{sum(p.numel() for p in plain.parameters()):,} parameters")
    ckpt_dir = ctx.run_dir / "checkpoints"
    if monitor is not None:
        monitor.start(ctx.run_dir)
        if state.global_step == 0:
            # the backbone as initialised: the curve's first point, the baseline it rises from
            values = monitor.at_epoch_end(plain, -1, 0, None)
            state.monitor_history.append({"epoch": -1, "step": 0, **values})
            ctx.logger.info("before the first step (the backbone as initialised):"
                            + epoch_text(values).removeprefix(" |"))

    def on_epoch_end(epoch_seconds: float) -> dict | None:
        """The monitor callback (engine.monitor), when it is due after this epoch."""
        if monitor is None or not monitor.due(state.epoch + 1):
            return None
        return monitor.at_epoch_end(plain, state.epoch, state.global_step, epoch_seconds)

    def save(names: tuple[str, ...]) -> None:
        rngs = all_gather_objects(ckpt_io.rng_state(ctx.device))
        if ctx.dist.is_main:
            ckpt = make_checkpoint(model, optimizer, scaler, state, cfg, rngs)
            for name in names:
                ckpt_io.atomic_save(ckpt, ckpt_dir / name)
            ctx.result_saved()

    try:
        while state.epoch < cfg.epochs:
            sampler.set_epoch(state.epoch)
            sampler.skip = state.step_in_epoch * cfg.per_device_batch
            result = train_one_epoch(ctx, model, loader, optimizer, scaler, state, stop, save)
            if result.interrupted:
                save(("latest.pth",))
                ctx.logger.warning(
                    f"stopped by signal {stop.signum} in epoch {state.epoch + 1} after step "
                    f"{state.step_in_epoch}; saved {ckpt_dir / 'latest.pth'}. Continue with "
                    f"--resume auto --out-dir {cfg.out_dir}")
                write_curves(ctx)
                return {"interrupted": True, "epoch": state.epoch, "step": state.global_step}
            _end_epoch(ctx, state, result, optimizer, save, on_epoch_end)
    finally:
        stop.restore()
    write_curves(ctx)
    if ckpt_dir.is_dir() or not ctx.dist.is_main:
        ctx.logger.info(f"pretraining finished after {state.epoch} epochs; checkpoints in "
                        f"{ckpt_dir}")
    else:                  # --epochs 0, or a run resumed at its end: nothing was trained or saved
        ctx.logger.info(f"no epoch to run ({state.epoch} done of --epochs {cfg.epochs}); no "
                        "checkpoint written")
    return {"interrupted": False, "epoch": state.epoch, "step": state.global_step,
            "loss": state.plateau.history[-1] if state.plateau.history else None}


def write_curves(ctx: RunContext) -> None:
    """training_curves.png (and TensorBoard) from the run's log.jsonl, when it has an epoch."""
    if ctx.dist.is_main and ctx.jsonl.path.is_file():
        from engine.visualize import write_training_curves
        path = write_training_curves(ctx.run_dir, ctx.tb.writer)
        if path is not None:
            ctx.logger.info(f"training curves (every loss term and the lr against step) -> {path}")


def _end_epoch(ctx: RunContext, state: TrainState, result: EpochResult, optimizer, save,
               on_epoch_end=None) -> None:
    """Schedule update, monitor (``on_epoch_end(epoch_seconds)``, a dict or None), epoch report,
    checkpoints, then move the state to the next epoch."""
    from engine import monitor as mon
    cfg: PretrainConfig = ctx.cfg
    failures = gather_failures(state.epoch_failures)
    loss = result.means["total"]
    epoch = state.epoch
    state.plateau = plateau_update(state.plateau, loss, patience=cfg.plateau_patience,
                                   factor=cfg.plateau_factor,
                                   active=epoch + 1 >= len(cfg.warmup_factors))
    values = on_epoch_end(result.seconds) if on_epoch_end is not None else None
    if values is not None:
        state.monitor_history.append({"epoch": epoch, "step": state.global_step, **values})
    if cfg.keep_best == "monitor":
        improved = mon.better(values, state.best_monitor)
        state.best_monitor = values["recall@1"] if improved else state.best_monitor
    else:
        improved = loss < state.best_loss
    state.best_loss = min(state.best_loss, loss)
    record = {"epoch": epoch, "step": state.global_step, "lr": optimizer.param_groups[0]["lr"],
              **{f"loss_{t}": v for t, v in result.means.items()},
              "samples_per_s": result.samples_per_s, "data_wait_fraction": result.data_wait,
              "skipped_videos": len(failures), "skipped": [list(f) for f in failures],
              "time": time.time()}
    ctx.jsonl.write(record)
    ctx.tb.scalars({f"loss_{t}": v for t, v in result.means.items()}, epoch, "epoch/")
    ctx.tb.scalars({"skipped_videos": len(failures), "samples_per_s": result.samples_per_s,
                    "data_wait_fraction": result.data_wait, "lr": record["lr"]}, epoch, "epoch/")
    ctx.logger.info(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} ("
                    + ", ".join(f"{t} {v:.4f}" for t, v in result.means.items() if t != "total")
                    + f") lr {record['lr']:.2e} | {result.samples_per_s:.1f} samples/s, "
                    f"data wait {result.data_wait:.0%} | "
                    + eta_text(epoch + 1, cfg.epochs, result.seconds) + mon.epoch_text(values))
    warn_decode_failures(ctx.logger, epoch, failures)
    state.next_epoch()
    names = ["latest.pth"]
    if improved:
        names.append("best.pth")
    if cfg.save_every_epochs and state.epoch % cfg.save_every_epochs == 0:
        names.append(f"epoch_{state.epoch:04d}.pth")
    save(tuple(names))
    if improved and ctx.dist.is_main:
        mon.write_best_note(ctx.run_dir / "checkpoints", cfg.keep_best, epoch, state.global_step,
                            loss, values)
