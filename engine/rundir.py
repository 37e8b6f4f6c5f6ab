"""Run folders: the whole lifecycle of the folder a job writes, in one place (:class:`RunFolder`,
which engine.common.setup_run / run_job use for all five jobs: pretraining, linear, finetuning,
retrieval, temporal diversity).

Claim. Before anything is written: --out-dir must be a folder this user can write (check_out_dir);
a lock keeps a second job out of a folder in use (RunLock); and the ownership rule holds
(check_ownership): a job never writes into the run folder of a checkpoint it reads, never into a
folder that holds another job's outputs (run.json says which job made a folder; a folder from
before run.json is recognised by its files), and into its own earlier outputs only with --resume
(pretraining) or --overwrite true.

What made it. Once start-up succeeded, ``run.json`` beside config.yaml records the job, the time,
the command, the config digest, the checkpoints read (sha256, or "random" and the seed), the split
files' digests, the git revision and the run's status (running, finished, failed, interrupted).
results.json carries the same provenance (:func:`provenance`), which the evaluation suite compares
before reusing a result.

Replace. --overwrite true moves the earlier outputs (OUTPUT_PATTERNS; log.txt and the retrieval
feature cache stay) into ``.overwritten-<time>/`` and deletes them only after the new run saved its
first checkpoint or result; a run that fails before that (error, Ctrl-C, SIGTERM) has its partial
outputs deleted and the earlier ones put back. A SIGKILL in between leaves ``.overwritten-*``, which
the next job in that folder names.

A job's start-up (configuration, dataset lists, checkpoints to load or resume) can fail on a user
mistake. Until it has succeeded the job writes nothing into its run folder: a failed start leaves an
existing folder exactly as it was and removes a folder it created. The lock is ``flock`` on
``<run dir>/.run.lock``, held for the job's lifetime. The kernel releases it whenever the process
ends (also on SIGKILL or a crash), so a lock file left by a killed job is stale by construction: the
next job simply acquires it. The file holds the holder's pid, host and start time for the message a
second job prints; a job that ends normally deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from atomic_io import write_error, write_json
from engine.errors import RunFolderError

LOCK_NAME = ".run.lock"
MANIFEST_NAME = "run.json"
ASIDE_PREFIX = ".overwritten-"     # where --overwrite keeps an earlier run until the new one is safe
JOB_NAMES = ("pretrain", "linear", "finetune", "retrieval", "temporal_diversity", "extract")
# Jobs that continue their own earlier run in a folder without --resume: feature extraction computes
# only the videos its folder lacks (engine.extract refuses features of other weights or another
# protocol, and keeps its features.npy / shards aside itself under --overwrite).
INCREMENTAL_JOBS = ("extract",)
# What the jobs write into a run folder (names or globs relative to it): --overwrite sets these
# aside. Not in the list, so left in place: log.txt (the folder's history, appended to by every
# run), features/ (the retrieval cache, keyed by what the features depend on), the lock, and
# anything else a user keeps there.
OUTPUT_PATTERNS = ("run.json", "config.yaml", "log.jsonl", "checkpoints", "tensorboard",
                   "results.json", "labelled_videos.txt", "val_videos.txt",
                   "per_class_accuracy.csv", "confusion_matrix.csv", "confusion_matrix.png",
                   "training_curves.png", "per_class_recall.csv", "recall_at_k.png",
                   "retrieval_grid.png", "retrieval_grid.txt", "temporal_diversity.json",
                   "similarity_*.png")
# config.yaml keys that only one job's config has: how a folder written before run.json existed
# tells which job made it.
_LEGACY_CONFIG_KEYS = (("temperature", "pretrain"), ("bn_mode", "linear"),
                       ("dropout", "finetune"), ("ks", "retrieval"))


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Refuse an --out-dir that is a file or cannot be written, before anything is created.

    Raises:
        RunFolderError: naming the path and the reason.
    """
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out-dir {path} is an existing file, not a folder; pass a folder "
                             "path (it is created if absent)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"--out-dir {path}: {existing} is a file, so the folder cannot be "
                             "created; pass another --out-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise RunFolderError(f"--out-dir {path} is not writable by this user{where}; pass a "
                             "folder you can write to, or fix its permissions")


def check_writable_dir(folder: str | os.PathLike, flag: str) -> None:
    """The same check for another output folder (e.g. --cache-dir)."""
    try:
        check_out_dir(folder)
    except RunFolderError as exc:
        raise RunFolderError(str(exc).replace("--out-dir", flag)) from None


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a job that is still starting (no details written yet)"
    return (f"pid {info.get('pid')} on host {info.get('host')}, started "
            f"{info.get('started')} ({info.get('command', '?')})")


class RunLock:
    """An exclusive flock on ``<run_dir>/.run.lock`` held until :meth:`release` or process exit.

    Args:
        run_dir: the run folder; created (with missing parents) if absent.
    Raises:
        RunFolderError: another live process holds the lock (the message names it).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.created: Path | None = None    # topmost folder this lock created, removed on abandon
        top = self.run_dir
        while not top.parent.exists():
            top = top.parent
        if not self.run_dir.exists():
            self.created = top
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.fd = self._acquire()
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(record).encode(), 0)
        except OSError as exc:   # a full disk refuses even these few bytes
            self.release(abandon=True)
            raise write_error(self.path, exc, "run lock", kept=False) from exc

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderError(
                    f"--out-dir {self.run_dir} is in use by another run: "
                    f"{_holder_text(self.path)}. Wait for it to end, or pass another --out-dir "
                    f"(the lock {self.path} is released when that process exits, however it "
                    "ends)") from None
            # the holder we waited on may have deleted the file it locked: lock the current one
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self, abandon: bool = False) -> None:
        """Unlock and delete the lock file; with ``abandon``, also remove the folders this lock
        created when nothing else was written into them (a failed start)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)   # before unlocking: see _acquire's inode check
        os.close(self.fd)
        self.fd = None
        if abandon and self.created is not None:
            folder = self.run_dir
            while True:
                try:
                    folder.rmdir()
                except OSError:
                    break                    # not empty: something else lives there
                if folder == self.created:
                    break
                folder = folder.parent


def files_written_since(run_dir: Path, since: float) -> list[str]:
    """Files under ``run_dir`` modified at or after ``since`` (a time.time()), relative, sorted;
    TensorBoard event files and hidden files (the lock, a write cut short) left out."""
    out = []
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if (path.is_file() and rel.parts[0] != "tensorboard" and not path.name.startswith(".")
                and path.stat().st_mtime >= since):
            out.append(str(rel))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Ownership: which job made a folder, and what a job may do there
# --------------------------------------------------------------------------------------------

def output_paths(run_dir: Path) -> list[Path]:
    """The job outputs (OUTPUT_PATTERNS) present in ``run_dir``, sorted."""
    found: set[Path] = set()
    for pattern in OUTPUT_PATTERNS:
        found.update(p for p in run_dir.glob(pattern) if p.exists() or p.is_symlink())
    return sorted(found)


def read_manifest(run_dir: Path) -> dict | None:
    """``<run_dir>/run.json`` as a dict; None when absent.

    Raises:
        RunFolderError: the file exists but is not a JSON object.
    """
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} cannot be read ({exc}); it records which job made "
                             f"{run_dir}: pass another --out-dir, or delete the folder if it is "
                             "not needed") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is not the run manifest a job writes; pass another "
                             "--out-dir")
    return data


def folder_owner(run_dir: Path) -> tuple[str | None, str]:
    """(the job that made ``run_dir``, the file that says so); (None, "") for a folder without
    job outputs. Folders from before run.json existed are recognised by their files: a
    results.json's "job", temporal_diversity.json, config.yaml keys only one job has,
    checkpoints (pretraining)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is not None:
        return str(manifest.get("job")), MANIFEST_NAME
    results = run_dir / "results.json"
    if results.is_file():
        try:
            job = json.loads(results.read_text()).get("job")
        except (OSError, ValueError, AttributeError):
            job = None
        if job:
            return str(job), "results.json"
    if (run_dir / "temporal_diversity.json").is_file():
        return "temporal_diversity", "temporal_diversity.json"
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        import yaml
        try:
            keys = set(yaml.safe_load(config_file.read_text()) or {})
        except (OSError, ValueError, yaml.YAMLError, TypeError):
            keys = set()
        for key, job in _LEGACY_CONFIG_KEYS:
            if key in keys:
                return job, "config.yaml"
    if any((run_dir / "checkpoints").glob("*.pth")):
        return "pretrain", "checkpoints/"
    return None, ""


def checkpoint_run_dir(checkpoint: str | os.PathLike) -> Path:
    """The run folder of a checkpoint file: the folder holding the ``checkpoints/`` folder that
    holds it, or else the folder holding it (resolved)."""
    parent = Path(checkpoint).resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def _names(paths: list[Path], run_dir: Path, limit: int = 5) -> str:
    names = [str(p.relative_to(run_dir)) + ("/" if p.is_dir() else "") for p in paths]
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def check_ownership(run_dir: Path, job: str, *, overwrite: bool, resume: str = "",
                    checkpoints: tuple[str, ...] = ()) -> None:
    """The ownership rule, before anything is written: a job never writes into the folder of a
    checkpoint it reads, never into a folder holding another job's outputs, and into its own
    earlier outputs only with --resume (pretraining) or --overwrite true.

    Raises:
        RunFolderError: naming the folder, what it holds and what to pass instead.
    """
    run_dir = Path(run_dir)
    aside = sorted(run_dir.glob(ASIDE_PREFIX + "*"))
    if aside:
        raise RunFolderError(
            f"--out-dir {run_dir} holds {aside[0]}/, the outputs of an earlier run that an "
            "--overwrite set aside and could not put back (that job was killed before its first "
            f"result was saved). Move them back (mv {aside[0]}/* {run_dir}/ after deleting what "
            f"the killed run left there) or delete {aside[0]} if you do not need them, then rerun")
    here = run_dir.resolve()
    for checkpoint in checkpoints:
        if checkpoint and checkpoint != "random" and here in (
                checkpoint_run_dir(checkpoint), Path(checkpoint).resolve().parent):
            raise RunFolderError(
                f"--out-dir {run_dir} is the run folder of the checkpoint it evaluates "
                f"({checkpoint}); a {job} job there would replace that run's files. Pass another "
                f"--out-dir (e.g. {run_dir.parent / (run_dir.name + '-' + job)})")
    outputs = output_paths(run_dir)
    if not outputs:
        return
    owner, evidence = folder_owner(run_dir)
    if owner is not None and owner != job:
        raise RunFolderError(
            f"--out-dir {run_dir} holds the outputs of a {owner} run ({evidence} says so; "
            f"{_names(outputs, run_dir)}); a {job} job does not write into another job's folder. "
            f"Pass another --out-dir (e.g. {run_dir / job})")
    if resume or overwrite or job in INCREMENTAL_JOBS:
        return
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pth"))
    if job == "pretrain" and ckpts:
        raise RunFolderError(
            f"--out-dir {run_dir} already holds the checkpoints of an earlier run "
            f"({', '.join(ckpts[:4])}{' ...' if len(ckpts) > 4 else ''}); continue it with "
            "--resume auto, write to a new --out-dir, or pass --overwrite true to replace it")
    raise RunFolderError(
        f"--out-dir {run_dir} already holds the outputs of an earlier {job} run "
        f"({_names(outputs, run_dir)}); write to a new --out-dir, or pass --overwrite true to "
        "replace them (the earlier ones are kept aside until the new run has saved its first "
        "result)")


def auto_resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``--resume auto`` continues from: ``checkpoints/latest.pth``; None when the
    folder holds no checkpoint at all (a fresh start).

    Raises:
        RunFolderError: the folder holds checkpoints but latest.pth is missing, a dangling link
            or not a file: the message lists the checkpoints present and the --resume PATH that
            continues from the newest.
    """
    folder = Path(run_dir) / "checkpoints"
    latest = folder / "latest.pth"
    present = sorted((p for p in folder.glob("*.pth") if p.is_file()),
                     key=lambda p: p.stat().st_mtime)
    if latest.is_file():
        return latest
    if not present and not (latest.exists() or latest.is_symlink()):
        return None
    what = ("a dangling link" if latest.is_symlink() and not latest.exists()
            else "a folder" if latest.is_dir() else "not a file" if latest.exists()
            else "missing")
    raise RunFolderError(unusable_latest(run_dir, f"{latest} is {what}"))


def unusable_latest(run_dir: Path, why: str) -> str:
    """The message for a run whose latest.pth cannot be resumed: what is wrong, the checkpoints
    present (newest first) and the --resume PATH that continues from the newest other one."""
    folder = Path(run_dir) / "checkpoints"
    others = sorted((p for p in folder.glob("*.pth") if p.is_file() and p.name != "latest.pth"),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    if not others:
        return (f"--resume auto: {why} and {folder} holds no other checkpoint; nothing to "
                "continue from: pass --overwrite true to start the run again, or another --out-dir")
    return (f"--resume auto: {why}, so the run cannot continue where it stopped, and starting "
            f"from scratch would overwrite it. Checkpoints present (newest first): "
            f"{', '.join(p.name for p in others)}. Continue from one with --resume {others[0]} "
            f"--out-dir {run_dir}")


# --------------------------------------------------------------------------------------------
# Provenance: what made a result
# --------------------------------------------------------------------------------------------

_DIGESTS: dict[tuple, str] = {}
# Settings that do not change a result: where and how fast it runs, what pictures it draws.
_NOT_PROTOCOL = {"out_dir", "progress", "device", "preset", "seed", "checkpoint",
                 "trust_checkpoint", "overwrite", "resume", "allow_config_change", "cache_dir",
                 "dist_timeout_s", "log_every_steps", "per_device_batch", "num_grid_queries",
                 "grid_topk", "embedding_points"}
_NOT_PROTOCOL_DATA = {"data_root", "num_workers", "max_bad_fraction"}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content (memoised per path, size and mtime within this process)."""
    import hashlib
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def protocol_config(cfg: Any) -> dict:
    """The resolved config without the settings that cannot change a result (_NOT_PROTOCOL): two
    results with equal protocol configs, checkpoints, seeds and split files are the same
    measurement."""
    import config as config_mod
    return _protocol_values(config_mod.to_dict(cfg))


def _protocol_values(values: dict) -> dict:
    out = {k: v for k, v in values.items() if k not in _NOT_PROTOCOL and k != "data"}
    out["data"] = {k: v for k, v in values.get("data", {}).items() if k not in _NOT_PROTOCOL_DATA}
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def split_file_digests(data: Any) -> dict[str, str]:
    """{split file relative to the data root: sha256} of the files that define ``data``'s split
    (UCF101 layout: classInd and the split's train/test lists; HMDB51: the split's 51 files).
    Other layouts have no split files: {}."""
    root = Path(data.data_root)
    if data.dataset in ("ucf101", "synthetic"):
        files = [root / "ucfTrainTestlist" / name for name in
                 ("classInd.txt", f"trainlist0{data.split}.txt", f"testlist0{data.split}.txt")]
    elif data.dataset == "hmdb51":
        files = sorted((root / "testTrainMulti_7030_splits").glob(f"*_test_split{data.split}.txt"))
    else:
        files = []
    return {str(f.relative_to(root)): file_sha256(f) for f in files if f.is_file()}


def provenance(cfg: Any, checkpoint: str | None = None) -> dict:
    """What a result depends on: the checkpoint's sha256 (or "random" and the seed), the seed,
    the protocol config (and its sha256) and the split files' digests. results.json carries it;
    the evaluation suite reuses a result only when it is equal to the planned run's."""
    checkpoint = getattr(cfg, "checkpoint", "") if checkpoint is None else checkpoint
    protocol = protocol_config(cfg)
    real = bool(checkpoint) and checkpoint != "random"
    return {
        "checkpoint_sha256": file_sha256(checkpoint) if real else "random",
        "checkpoint_recipe": checkpoint_recipe(checkpoint) if real else None,
        "seed": cfg.seed,
        "config_sha256": _digest(protocol),
        "config": protocol,
        "split_files": split_file_digests(cfg.data),
    }


def _digest(values: Any) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


_RECIPES: dict[str, dict | None] = {}


def checkpoint_recipe(checkpoint: str) -> dict | None:
    """How one of this project's checkpoints was trained: its job ("pretrain", "classifier"),
    the digest of its training config without the seed and the run-only settings, and its seed;
    None for other files (the release's, torchvision's). Two checkpoints with one recipe and
    different seeds are seed replicates: their results may be averaged as seeds."""
    from models.weights import CheckpointError
    sha = file_sha256(checkpoint)
    if sha not in _RECIPES:
        from engine.checkpoint import load_checkpoint
        try:
            ckpt = load_checkpoint(checkpoint)
        except CheckpointError:
            _RECIPES[sha] = None
        else:
            values = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
            _RECIPES[sha] = {"kind": ckpt.get("meta", {}).get("kind"),
                             "config_sha256": _digest(_protocol_values(values)),
                             "seed": values.get("seed")}
    return _RECIPES[sha]


def provenance_differences(a: dict, b: dict, ignore: tuple[str, ...] = ("seed",),
                           ignore_config: tuple[str, ...] = ()) -> list[str]:
    """What differs between two provenance records, as 'key: A vs B' texts (config keys by name).
    With "seed" ignored, two checkpoints of one recipe (checkpoint_recipe) that differ only in
    their seed count as the same: seed replicates of pretraining and evaluation. ``ignore_config``
    names config keys (dotted, e.g. "data.split") left out of the comparison."""
    out = []
    for key in ("checkpoint_sha256", "seed", "split_files"):
        if key == "checkpoint_sha256" and "seed" in ignore and a.get(key) != b.get(key):
            ra, rb = a.get("checkpoint_recipe"), b.get("checkpoint_recipe")
            if ra and rb and {**ra, "seed": None} == {**rb, "seed": None}:
                continue
        if key not in ignore and a.get(key) != b.get(key):
            out.append(f"{key}: {_short(a.get(key))} vs {_short(b.get(key))}")
    ca, cb = a.get("config") or {}, b.get("config") or {}
    flat_a, flat_b = _flatten(ca), _flatten(cb)
    for key in sorted(set(flat_a) | set(flat_b)):
        if key not in ignore_config and flat_a.get(key) != flat_b.get(key):
            out.append(f"config {key}: {flat_a.get(key)!r} vs {flat_b.get(key)!r}")
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return repr(value)


# --------------------------------------------------------------------------------------------
# The run folder's lifecycle
# --------------------------------------------------------------------------------------------

class RunFolder:
    """A job's run folder from claim to release; every job goes through it (engine.common).

    1. ``claim``: the folder is usable (check_out_dir), locked (RunLock) and the job may write
       there (check_ownership), before anything is written.
    2. ``begin`` (start-up succeeded): with --overwrite the earlier run's outputs are moved into
       ``.overwritten-<time>/``; run.json records what makes this run.
    3. ``result_saved`` (first checkpoint or results file written): the set-aside outputs are
       deleted.
    4. ``end``: the run failed before 3: its partial outputs are deleted and the earlier ones
       put back; run.json gets the run's status. Then the lock is released.
    A SIGKILL between 2 and 3 leaves ``.overwritten-*``: the next job names it (check_ownership).
    """

    def __init__(self, path: str | os.PathLike, job: str, *, overwrite: bool = False,
                 resume: str = "", checkpoints: tuple[str, ...] = ()):
        self.path = Path(path)
        self.job = job
        self.overwrite = overwrite
        self.resume = resume
        self.checkpoints = tuple(c for c in checkpoints if c)
        self.lock: RunLock | None = None
        self.aside: Path | None = None
        self.begun = False

    def claim(self) -> "RunFolder":
        check_out_dir(self.path)
        self.lock = RunLock(self.path)
        try:
            check_ownership(self.path, self.job, overwrite=self.overwrite, resume=self.resume,
                            checkpoints=self.checkpoints)
        except BaseException:
            self.lock.release(abandon=True)
            raise
        return self

    def begin(self, cfg: Any) -> list[str]:
        """Set an earlier run aside (--overwrite) and write run.json; returns what was set aside."""
        moved: list[str] = []
        if self.overwrite:
            outputs = output_paths(self.path)
            if outputs:
                self.aside = self.path / f"{ASIDE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
                self.aside.mkdir()
                for item in outputs:
                    rel = item.relative_to(self.path)
                    os.replace(item, self.aside / rel)
                    moved.append(str(rel))
        self._write_manifest(cfg)
        self.begun = True
        return moved

    def _write_manifest(self, cfg: Any) -> None:
        import hashlib

        import config as config_mod
        from engine.logging import git_revision
        earlier = read_manifest(self.path) if self.resume else None
        now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        resolved = json.dumps(config_mod.to_dict(cfg), sort_keys=True, default=str)
        record = {
            "job": self.job, "created": now, "command": command,
            "config_sha256": hashlib.sha256(resolved.encode()).hexdigest(),
            "checkpoints": {c: (file_sha256(c) if c != "random" and Path(c).is_file()
                                else "random") for c in self.checkpoints} or "random",
            "seed": getattr(cfg, "seed", None),
            "split_files": split_file_digests(cfg.data) if hasattr(cfg, "data") else {},
            "git": git_revision(), "status": "running",
        }
        if earlier is not None and earlier.get("job") == self.job:
            record["created"] = earlier.get("created", now)
            record["resumed"] = [*earlier.get("resumed", []), {"time": now, "command": command}]
        write_json(self.path / MANIFEST_NAME, record, what="run manifest")

    def result_saved(self) -> str | None:
        """The new run's first result is on disk: delete the set-aside outputs. Returns the
        folder deleted, if any."""
        if self.aside is None:
            return None
        aside, self.aside = self.aside, None
        shutil.rmtree(aside, ignore_errors=True)
        return str(aside)

    def end(self, status: str) -> list[str]:
        """Record ``status`` ("finished", "failed", "interrupted") in run.json; a run that did not
        finish and saved no result has its partial outputs deleted and the set-aside ones put
        back. Returns the names put back."""
        restored: list[str] = []
        if self.aside is not None and status != "finished":
            for item in output_paths(self.path):
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item)
                else:
                    item.unlink()
            for item in sorted(self.aside.iterdir()):
                os.replace(item, self.path / item.name)
                restored.append(item.name)
            self.aside.rmdir()
            self.aside = None
            return restored
        if status == "finished":
            self.result_saved()
        if self.begun:
            manifest = read_manifest(self.path) or {}
            if manifest.get("job") == self.job:
                manifest["status"] = status
                manifest["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                write_json(self.path / MANIFEST_NAME, manifest, what="run manifest")
        return restored

    def release(self, abandon: bool = False) -> None:
        if self.lock is not None:
            self.lock.release(abandon=abandon)
            self.lock = None
