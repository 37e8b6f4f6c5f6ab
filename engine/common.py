"""Pieces every job shares: run folder set-up, precision, data loaders, dataset preparation."""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

import config as config_mod
from engine.distributed import DistInfo, barrier, init_distributed
from engine.logging import JsonlLog, TensorBoard, banner, get_logger


@dataclass
class RunContext:
    """Everything a job needs about where it runs and where it writes.

    With deferred writes (``setup_run(..., defer_writes=True)``) the run folder stays untouched
    until :meth:`commit`: log lines wait in memory, config.yaml and TensorBoard are not written.
    The folder's lifecycle (claim, manifest, --overwrite, release) is ``folder``'s
    (engine.rundir.RunFolder, rank 0 only).
    """

    cfg: Any
    dist: DistInfo
    run_dir: Path
    logger: logging.Logger
    tb: TensorBoard
    jsonl: JsonlLog
    folder: Any = None                  # engine.rundir.RunFolder on rank 0
    pending: Any = None                 # log records held back until commit
    committed: bool = True
    started: float = 0.0
    restored: tuple = ()                # what a failed --overwrite run put back (close)
    closed: bool = False

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def commit(self) -> None:
        """Start-up succeeded: set an earlier run aside (--overwrite), write run.json,
        config.yaml, the held-back log lines, open TensorBoard. Idempotent."""
        if self.committed:
            return
        self.committed = True
        if self.dist.is_main:
            moved = self.folder.begin(self.cfg) if self.folder is not None else []
            config_mod.save_config(self.cfg, self.run_dir)
            get_logger("tclr", self.run_dir)
            file_handlers = [h for h in self.logger.handlers if isinstance(h, logging.FileHandler)]
            for record in self.pending.buffer if self.pending is not None else []:
                for handler in file_handlers:
                    handler.handle(record)
            if moved:
                self.logger.warning(
                    f"--overwrite: moved the earlier run's {', '.join(moved)} into "
                    f"{self.folder.aside}; deleted once this run has saved its first result, put "
                    "back if it fails before that")
        self._drop_pending()
        self.tb = TensorBoard(self.run_dir / "tensorboard")

    def result_saved(self) -> None:
        """The job wrote a checkpoint or its results: an earlier run set aside is deleted."""
        if self.folder is not None:
            gone = self.folder.result_saved()
            if gone:
                self.logger.info(f"--overwrite: the new run saved its first result; deleted the "
                                 f"earlier run's outputs ({gone})")

    def _drop_pending(self) -> None:
        if self.pending is not None:
            self.logger.removeHandler(self.pending)
            self.pending = None

    def close(self, status: str = "finished") -> None:
        """Close the logs, record the run's status, put an earlier run back if this one failed
        before saving anything, and release the run folder (removing it when a failed start made
        it). ``status``: "finished", "failed" or "interrupted"."""
        if self.closed:
            return
        self.closed = True
        self.tb.close()
        self._drop_pending()
        if self.folder is not None:
            self.restored = tuple(self.folder.end(status) if self.committed else ())
            self.folder.release(abandon=status != "finished" and not self.committed)
            self.folder = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _detach_file_handlers(logger: logging.Logger) -> None:
    """Forget the log.txt files of jobs run earlier in this process."""
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(handler)
        handler.close()


JOB_OF_CONFIG = {"PretrainConfig": "pretrain", "LinearConfig": "linear",
                 "FinetuneConfig": "finetune", "RetrievalConfig": "retrieval",
                 "ExtractConfig": "extract"}


def setup_run(cfg: Any, job: str, extra_banner: dict[str, Any] | None = None,
              defer_writes: bool = False, kind: str | None = None,
              checkpoints: tuple[str, ...] | None = None) -> RunContext:
    """Join the process group, claim the run folder, print the banner.

    Args:
        job: the banner's title.
        defer_writes: write nothing into the run folder (config.yaml, log.txt, TensorBoard) until
            the job calls ``ctx.commit()``; False commits at once.
        kind: the job's name in run.json (engine.rundir.JOB_NAMES); default from the config's
            class.
        checkpoints: the checkpoints the job reads (default: ``cfg.checkpoint``); the run folder
            must not be theirs.
    Raises:
        RunFolderError: --out-dir is a file, not writable, in use by another live run, holds
            another job's outputs or the job's earlier ones (without --overwrite / --resume),
            or is the run folder of a checkpoint the job reads.
    """
    from engine.rundir import RunFolder
    from engine.logging import PendingRecords
    started = time.time()
    dist_info = init_distributed(cfg.device, timeout_s=cfg.dist_timeout_s,
                                 backend=cfg.dist_backend)
    config_mod.finalize(cfg, world_size=dist_info.world_size)
    run_dir = Path(cfg.out_dir)
    folder = None
    logger = get_logger("tclr")
    _detach_file_handlers(logger)
    pending = None
    if dist_info.is_main:
        if checkpoints is None:
            checkpoints = (getattr(cfg, "checkpoint", ""),)
        folder = RunFolder(run_dir, kind or JOB_OF_CONFIG[type(cfg).__name__],
                           overwrite=getattr(cfg, "overwrite", False),
                           resume=getattr(cfg, "resume", ""), checkpoints=checkpoints).claim()
        pending = PendingRecords()
        logger.addHandler(pending)
    if dist_info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision = {"tf32": apply_tf32(cfg.tf32)}
    if dist_info.distributed:
        precision["process group"] = torch.distributed.get_backend()
    ctx = RunContext(cfg=cfg, dist=dist_info, run_dir=run_dir, logger=logger,
                     tb=TensorBoard(run_dir / "tensorboard", enabled=False),
                     jsonl=JsonlLog(run_dir / "log.jsonl"), folder=folder, pending=pending,
                     committed=False, started=started)
    banner(logger, job, config_mod.describe(cfg), dist_info.device, dist_info.world_size,
           {**precision, **(extra_banner or {})})
    if dist_info.device.type == "cpu" and getattr(cfg, "amp", "off") in ("fp16", "bf16"):
        logger.warning(f"--amp {cfg.amp} has no effect on the CPU: this run computes in float32")
    if not defer_writes:
        ctx.commit()
    return ctx


def run_job(cfg: Any, title: str, body, kind: str | None = None,
            checkpoints: tuple[str, ...] | None = None,
            extra_banner: dict[str, Any] | None = None) -> Any:
    """``body(cfg, ctx)`` inside a set-up run; closes the logs and leaves the process group after.

    The body calls ``ctx.commit()`` once its start-up (data lists, checkpoints) has succeeded;
    an error before that leaves the run folder as it was. Ctrl-C or SIGTERM ends the job with
    :class:`engine.errors.JobInterrupted`, whose message lists the files the run kept (a training
    loop may handle both itself: pretraining's StopFlag saves a checkpoint first). ``kind`` and
    ``checkpoints`` as setup_run takes them.
    """
    from engine.distributed import cleanup
    from engine.errors import JobInterrupted
    from engine.preemption import JobSignals, Terminated, job_ending
    signals = JobSignals()
    ctx = None
    status = "failed"
    try:
        ctx = setup_run(cfg, title, extra_banner, defer_writes=True, kind=kind,
                        checkpoints=checkpoints)
        try:
            result = body(cfg, ctx)
        except KeyboardInterrupt as exc:
            status = "interrupted"
            ctx.close(status)
            raise JobInterrupted(interrupted_message(ctx, isinstance(exc, Terminated)),
                                 status=143 if isinstance(exc, Terminated) else 130) from None
        ctx.commit()
        # a loop that stopped on a signal after saving (pretraining) returns normally
        stopped = isinstance(result, dict) and result.get("interrupted")
        status = "interrupted" if stopped else "finished"
        return result
    except BaseException as exc:
        job_ending()   # a SIGTERM from here on (torchrun's, after a peer died) is ignored
        if ctx is not None and ctx.committed:
            _log_final_line(ctx, exc)
        raise
    finally:
        if ctx is not None:
            ctx.close(status)
            _detach_file_handlers(ctx.logger)
        cleanup()
        signals.restore()


def _log_final_line(ctx: RunContext, exc: BaseException) -> None:
    """The line the entry point will print for ``exc``, also in log.txt (a bug: its traceback)."""
    from engine.cli import final_line
    from engine.logging import log_to_files
    line = final_line(exc)
    if line is not None:
        log_to_files(line)
    elif isinstance(exc, Exception):
        import traceback
        log_to_files("".join(traceback.format_exception(exc)).rstrip())


def interrupted_message(ctx: RunContext, sigterm: bool = False) -> str:
    """What a Ctrl-C'd (or SIGTERM'd) job kept: the files it wrote into its run folder, or the
    earlier run that --overwrite had set aside, put back."""
    from engine.rundir import files_written_since
    by = "SIGTERM" if sigterm else "Ctrl-C"
    if not ctx.committed:
        return f"stopped by {by} during start-up; nothing was written to {ctx.run_dir}"
    if ctx.restored:
        return (f"stopped by {by} before the run saved a result; the earlier run's "
                f"{', '.join(ctx.restored)} that --overwrite had set aside are back in "
                f"{ctx.run_dir}")
    kept = files_written_since(ctx.run_dir, ctx.started) if ctx.dist.is_main else []
    missing = ("" if "results.json" in kept
               else "; the job did not finish, so there is no new results.json")
    again = ("continue it with --resume auto" if hasattr(ctx.cfg, "resume")
             else "rerun the same command with --overwrite true to run the job again")
    return (f"stopped by {by}; kept in {ctx.run_dir}: {', '.join(kept) or 'nothing'}{missing}; "
            f"{again}")


# --------------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------------

def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for a config's ``amp`` setting (None = float32). CPU always runs float32."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp in ("auto", "fp16"):
        return torch.float16
    return torch.bfloat16


# --tf32: (TF32 allowed in matmuls, in cuDNN convolutions). The release ran torch 1.9, where both
# defaulted to on; torch >= 1.12 turned matmuls off and left cuDNN on. These flags have no effect
# on the CPU or on GPUs before Ampere.
TF32_POLICIES = {
    "release": (True, True),
    "torch_default": (False, True),
    "off": (False, False),
}


def apply_tf32(policy: str) -> str:
    """Set torch's TF32 flags for the whole process as ``policy`` (``--tf32``) says.

    Every job calls this once at start-up (setup_run), so training and evaluation compute alike.

    Returns:
        The banner's description of the policy.
    Raises:
        ConfigError: an unknown policy name (with the known ones).
    """
    if policy not in TF32_POLICIES:
        raise config_mod.ConfigError(f"config key 'tf32': {policy!r} is not one of "
                                     f"{', '.join(TF32_POLICIES)}")
    matmul, conv = TF32_POLICIES[policy]
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = conv
    where = [name for name, on in (("matmuls", matmul), ("convolutions", conv)) if on]
    return f"{policy} (TF32 in {' and '.join(where) if where else 'nothing: true float32'})"


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A grad scaler, enabled only for float16 autocast (bf16 and float32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def ensure_dataset(cfg: Any, logger: logging.Logger) -> None:
    """Generate the synthetic dataset if the config asks for it and it is absent (rank 0 only).

    A complete synthetic dataset already at ``data_root`` is used as it is; when its generation
    arguments differ from the config's ``synthetic_*`` values the log says so (regenerate with
    ``python -m dataloaders.synthetic --overwrite`` to change it).
    """
    d = cfg.data
    if d.dataset != "synthetic":
        return
    from engine.distributed import is_main_process
    if is_main_process():
        from dataloaders.synthetic import SyntheticDatasetError
        try:
            _ensure_synthetic(cfg, logger)
        except SyntheticDatasetError as exc:
            # the generator's advice names its own flags (--overwrite, --out): from a job they
            # read as the job's, whose --overwrite never touches the dataset
            raise SyntheticDatasetError(
                f"the synthetic dataset at --data-root {d.data_root}: {exc} (those are the "
                "generator's flags; the job's --overwrite does not regenerate data: run python -m "
                f"dataloaders.synthetic --out {d.data_root} --overwrite with the sizes you want, "
                "or pass another --data-root)") from None
    barrier()


def _ensure_synthetic(cfg: Any, logger: logging.Logger) -> None:
    from dataloaders import synthetic
    d = cfg.data
    wanted = {"classes": d.synthetic_classes, "videos_per_class": d.synthetic_videos_per_class,
              "frames": d.synthetic_frames, "width": d.synthetic_width,
              "height": d.synthetic_height, "design": d.synthetic_design}
    manifest = Path(d.data_root) / synthetic.MANIFEST_NAME
    if manifest.is_file() and synthetic.read_manifest(d.data_root).get("complete"):
        have = synthetic.read_manifest(d.data_root)["arguments"]
        differ = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
        if differ:
            logger.warning(f"using the synthetic dataset already in {d.data_root}; it differs "
                           f"from the synthetic_* settings (have -> asked): {differ}")
    else:
        logger.info(f"generating the synthetic dataset in {d.data_root}")
        synthetic.generate(d.data_root, seed=0, layout="ucf101", progress=cfg.progress, **wanted)


def _worker_signals() -> None:
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group. Workers ignore both, so the
    # main process finishes its step, saves a checkpoint and then shuts them down: a worker dying
    # from the signal would make the DataLoader raise in the main process in the middle of that
    # step. A worker whose main process is gone still exits (the DataLoader's parent watchdog).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _kill_workers_at_exit() -> None:
    """SIGKILL the DataLoader workers still running when the interpreter exits.

    They ignore SIGTERM (see _worker_signals), and multiprocessing's exit handler, which runs after
    this one, ends daemonic children with SIGTERM and then waits for them: the workers of a loader
    kept alive by an exception's traceback would otherwise hold up the exit forever. The
    DataLoader's SIGCHLD handler goes first: it would report the killed workers as an error.
    """
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if workers:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in workers:
        child.kill()
        child.join()


_EXIT_HANDLER_REGISTERED = False


def _register_exit_handler() -> None:
    global _EXIT_HANDLER_REGISTERED
    if not _EXIT_HANDLER_REGISTERED:
        atexit.register(_kill_workers_at_exit)
        _EXIT_HANDLER_REGISTERED = True


def _worker_init(worker_id: int) -> None:
    """worker_init_fn: the signal policy plus the data package's per-worker seeding."""
    _worker_signals()
    from dataloaders.datasets import seed_worker
    seed_worker(worker_id)


class SkipFirst(Sampler):
    """Drop the first ``skip`` indices of the wrapped sampler (for exact mid-epoch resume)."""

    def __init__(self, sampler: Sampler, skip: int = 0):
        self.sampler = sampler
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        for i, item in enumerate(self.sampler):
            if i >= self.skip:
                yield item

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def drop_last_batch(num_items: int, batch_size: int, world_size: int, drop_last: bool = False,
                    min_last_batch: int = 1) -> bool:
    """Whether a training loader drops each epoch's last partial batch.

    One process keeps it unless ``drop_last`` asks otherwise, as the release does (its DataLoaders
    keep drop_last=False: 9,537 UCF101 split-1 videos in batches of 40 give 239 steps, the last of
    17 videos), except when it would hold fewer than ``min_last_batch`` items (pretraining: 2,
    since the head's BatchNorm1d cannot normalise a single video and instance contrast needs two).
    Under torchrun (world_size > 1) it is always dropped: DistributedSampler could keep it only by
    padding the epoch with repeated videos (some videos seen twice, the same video possibly its own
    negative across the global batch), and every process must run the same number of steps with
    equal shares of the global batch.
    """
    if world_size > 1 or drop_last:
        return True
    remainder = num_items % batch_size
    return 0 < remainder < min_last_batch


def make_loader(dataset: Dataset, cfg: Any, dist_info: DistInfo, *, train: bool,
                collate_fn=None, batch_size: int | None = None,
                min_last_batch: int = 1) -> tuple[DataLoader, SkipFirst]:
    """DataLoader over this process's shard of ``dataset``.

    Training: shuffled with the run seed (DistributedSampler, also for one process, so the order is
    a pure function of (seed, epoch)), items seeded per (seed, epoch, index); the last partial
    batch is kept in one process and dropped under torchrun (drop_last_batch, ``cfg.drop_last``).
    Evaluation: no shuffle, no drop (every video once; DistributedSampler padding is undone by the
    caller through video ids).

    Args:
        min_last_batch: training: a last partial batch smaller than this is dropped.

    Returns:
        (loader, sampler): call ``sampler.set_epoch(e)`` before each epoch and set
        ``sampler.skip`` to resume mid-epoch.
    """
    from dataloaders.datasets import EpochSeededSampler
    batch = batch_size or cfg.per_device_batch
    drop = train and drop_last_batch(len(dataset), batch * dist_info.world_size,
                                     dist_info.world_size, getattr(cfg, "drop_last", False),
                                     min_last_batch)
    base = DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                              shuffle=train, seed=cfg.seed, drop_last=drop)
    sampler = SkipFirst(EpochSeededSampler(base, cfg.seed) if train else base)
    workers = cfg.data.num_workers
    if workers > 0:
        _register_exit_handler()
    # Each worker builds whole batches and keeps prefetch_factor of them in shared memory: at the
    # paper's size a batch is ~1 GB (float32 [40, 2, 5, 3, 16, 112, 112]; ~0.75 GB of raw 320x240
    # uint8 frames with augment_on="device"), so 8 workers at 2 already hold ~16 GB. Throughput is
    # set by the number of workers; more prefetch only absorbs jitter, at that memory price.
    # Batches are pinned (AugmentParams has pin_memory() for the device-augmentation batches) so
    # the training step's .to(device, non_blocking=True) copies overlap with compute.
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler,
        num_workers=workers, collate_fn=collate_fn, drop_last=drop,
        pin_memory=dist_info.device.type == "cuda", persistent_workers=train and workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=_worker_init if workers > 0 else None,
        multiprocessing_context=_mp_context() if workers > 0 else None)
    return loader, sampler


def _mp_context() -> str | None:
    # fork is fastest and fine for CPU work; with CUDA initialised, forked workers must not touch
    # CUDA (ours do not).
    return "fork" if os.name == "posix" else None

