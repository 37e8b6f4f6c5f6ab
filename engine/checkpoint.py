"""Atomic, safely loadable checkpoints.

Every checkpoint this project writes holds plain tensors, numbers, strings, lists and dicts only,
so it loads with ``torch.load(..., weights_only=True)``: opening a file never runs code from it.
Writes go through atomic_io.atomic_write: a temporary file in the same folder, flushed and fsync'ed,
then renamed over the target; a kill at any moment leaves either the old or the new file, never a
torn one, and a failed write (full disk, permission) removes its temporary file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomic_io import WriteError, atomic_write
from engine.errors import NonFiniteWeightsError
from models.weights import CheckpointError, check_r2plus1d_layout, read_checkpoint

FORMAT = "tclr-repro"
FORMAT_VERSION = 1


class CheckpointWriteError(WriteError, RuntimeError):
    """Writing a checkpoint failed; the previous file at the target path is untouched."""


def atomic_save(obj: Any, path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """``torch.save`` to ``path`` atomically (atomic_io.atomic_write: temp file + fsync + rename).

    Raises:
        CheckpointWriteError: the write failed (full disk, permissions, name too long); the
            temporary file is removed and the previous file intact; the message says which.
        NonFiniteWeightsError: ``obj["model"]`` holds NaN or infinite values (nothing written).
    """
    path = Path(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        require_finite(obj["model"], f"refusing to write checkpoint {path}: the model's weights",
                       f" The previous {path.name}, if any, is intact. Training diverged: lower "
                       "--lr, or use --amp off")
    try:
        return atomic_write(path, lambda handle: torch.save(obj, handle), what)
    except WriteError as exc:
        raise CheckpointWriteError(str(exc)) from exc.__cause__


def nonfinite_tensors(state: dict) -> tuple[list[str], int]:
    """(names of the floating-point tensors of ``state`` holding NaN or inf, number of floating
    tensors)."""
    floats = {k: v for k, v in state.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point()}
    return [k for k, v in floats.items() if not bool(torch.isfinite(v).all())], len(floats)


def require_finite(state: dict, what: str, hint: str = "") -> None:
    """Raise NonFiniteWeightsError("<what> hold NaN or inf ...<hint>") unless every tensor of
    ``state`` is finite."""
    bad, total = nonfinite_tensors(state)
    if bad:
        raise NonFiniteWeightsError(f"{what} hold NaN or inf values ({len(bad)} of {total} "
                                    f"tensors, first {bad[0]!r}).{hint}")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load one of this project's checkpoints safely (``weights_only=True``), on the CPU.

    Raises:
        CheckpointError: missing, truncated or unreadable file, not this project's format, or
            R(2+1)D-18 weights in the earlier layer4 layout (models.weights.check_r2plus1d_layout).
    """
    ckpt = read_checkpoint(path, trust_checkpoint=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this project "
                              f"(no format={FORMAT!r}); to start from other weights use "
                              "--checkpoint with the evaluation scripts")
    if isinstance(ckpt.get("model"), dict):
        check_r2plus1d_layout(ckpt["model"], str(path))
    return ckpt


# --------------------------------------------------------------------------------------------
# RNG states as plain tensors (weights_only-loadable)
# --------------------------------------------------------------------------------------------

def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """RNG states of Python, NumPy and torch as plain data; with a CUDA ``device``, also that
    device's CUDA RNG (key ``cuda_device``).

    Only this process's own device is saved: each process of a job saves its own, so a checkpoint
    resumes on any number of visible GPUs. Without a CUDA ``device`` CUDA is not touched at all
    (querying it would initialise CUDA on every GPU of the machine for a ``--device cpu`` run).
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> str | None:
    """Restore what :func:`rng_state` captured; the CUDA RNG only for a CUDA ``device``.

    Checkpoints of the earlier format hold one CUDA state per visible device (key ``cuda``, from
    ``get_rng_state_all``); the entry of this process's device index is restored when it exists.

    Returns:
        None, or a sentence for the log when the CUDA RNG could not be restored (the run then
        continues with a freshly seeded CUDA RNG: resumed, but not bit-identical).
    """
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"])
    if device is None or device.type != "cuda":
        return None
    if "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)
        return None
    saved = state.get("cuda") or []
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index < len(saved):
        torch.cuda.set_rng_state(saved[index], device)
        return None
    why = ("no CUDA RNG state (it was written on the CPU)" if not saved else
           f"CUDA RNG states of {len(saved)} devices, none for this process's {device}")
    return (f"the checkpoint holds {why}; the CUDA RNG of {device} starts from this run's seed, "
            "so the resumed run is not a bit-identical continuation")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """``<run_dir>/checkpoints/latest.pth`` if it exists."""
    p = Path(run_dir) / "checkpoints" / "latest.pth"
    return p if p.is_file() else None
