"""Loading backbone weights from this project's checkpoints, the authors' released checkpoints
(spec section 10), bare backbone state dicts and torchvision-format state dicts.

Loading is strict on the backbone: every parameter and buffer of the backbone must be in the file
with the right shape (only BatchNorm `num_batches_tracked` counters, absent from very old files, may
be missing; they are listed in LoadReport.missing). Everything else in the file (projection head,
classifier fc, optimizer state) is ignored and listed in LoadReport.ignored.

The evaluation jobs (linear, finetuning, retrieval, the temporal-diversity analysis) start their
backbone with :func:`build_initialised_backbone`: one policy for the checkpoint, its channel order
and its finiteness.
"""

import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from confkit import ConfigError
from user_errors import UserError

from .registry import build_backbone

PROJECT_FORMAT = "tclr-repro"
RELEASE_COLOR = "bgr"  # the release decodes frames with OpenCV and never converts them to RGB
# Where a backbone's keys may sit inside a state dict: ours ("backbone."), the release's
# nn.Sequential(backbone, head) with or without DataParallel ("module.0.", "0."), DataParallel
# classifiers ("module."), bare / torchvision dicts ("").
BACKBONE_PREFIXES = ("", "backbone.", "module.backbone.", "module.0.", "0.", "module.")
RELEASE_STATE_KEYS = ("state_dict", "bb_state_dict")
OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)
# What torch.load raises on a damaged file (besides pickle.UnpicklingError)
LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError)
# The temporal conv of a (2+1)D pair in layer4[0].conv1: only R(2+1)D-18 files written by this
# project before its layer4 took the release's layout (one full dilated Conv3d) have this key.
OLD_R2PLUS1D_LAYER4_KEY = "layer4.0.conv1.0.3.weight"


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the backbone (message names path, key, shapes)."""


@dataclass
class LoadReport:
    """What load_backbone_weights did.

    Attributes:
        loaded: backbone keys taken from the file.
        ignored: keys of the file not used (head, fc, ...), with their names in the file.
        missing: backbone keys allowed to be absent that were absent (BatchNorm counters).
        color: channel order the weights expect ("bgr" / "rgb"), None when the file does not say.
        source: "tclr-repro", "release", "torchvision" (bare dict with fc) or "state_dict" (bare).
    """

    loaded: list[str]
    ignored: list[str]
    missing: list[str]
    color: str | None
    source: str


def load_backbone_weights(
    backbone: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping,
    trust_checkpoint: bool = False,
) -> LoadReport:
    """Load backbone weights, strictly, from a file or an in-memory dict.

    Args:
        backbone: the backbone to fill (its state dict names are torchvision-style).
        path_or_state_dict: checkpoint path, or a dict (checkpoint dict or state dict).
        trust_checkpoint: allow full unpickling of files that hold Python objects besides tensors
            (the release's checkpoints hold a GradScaler). Unpickling runs code from the file: only
            for files you trust.

    Returns:
        LoadReport.

    Raises:
        CheckpointError: unreadable file, unknown layout, missing backbone key, or shape mismatch.
    """
    if isinstance(path_or_state_dict, Mapping):
        where, raw = "<in-memory state dict>", path_or_state_dict
    else:
        where = str(path_or_state_dict)
        raw = read_checkpoint(path_or_state_dict, trust_checkpoint)
    state, color, source, meta = _unwrap(raw, where)
    check_r2plus1d_layout(state, where)
    _check_meta(backbone, meta, where)
    wanted = backbone.state_dict()
    prefix = _backbone_prefix(state, wanted)
    found = _match_backbone_keys(state, wanted, prefix, where, backbone)
    missing = [key for key in wanted if key not in found]
    merged = dict(wanted)
    merged.update(found)
    backbone.load_state_dict(merged, strict=True)
    used = {prefix + key for key in found}
    ignored = [key for key in state if key not in used]
    return LoadReport(loaded=list(found), ignored=ignored, missing=missing, color=color, source=source)


def build_initialised_backbone(cfg: Any, logger: logging.Logger,
                               require_finite: Callable[[Mapping, str, str], None]
                               ) -> tuple[nn.Module, dict[str, Any]]:
    """The configured backbone, built from the current RNG state, then :func:`init_backbone`.

    Args:
        cfg: a job config with ``backbone``, ``width``, ``checkpoint``, ``trust_checkpoint`` and
            ``data.color``.
        logger: where the load summary and the channel-order warning go.
        require_finite: ``require_finite(state, what, hint)`` raises unless every tensor of
            ``state`` is finite (the engine's ``engine.checkpoint.require_finite``; passed in so
            that this package does not import the engine).
    Returns:
        (backbone on the CPU, init info as :func:`init_backbone` returns it).
    """
    backbone = build_backbone(cfg.backbone, width=cfg.width)
    return backbone, init_backbone(backbone, cfg, logger, require_finite)


def init_backbone(backbone: nn.Module, cfg: Any, logger: logging.Logger,
                  require_finite: Callable[[Mapping, str, str], None]) -> dict[str, Any]:
    """Load ``cfg.checkpoint`` into the backbone (random initialisation when it is empty).

    Channel order policy: when the checkpoint records one (this project's ``meta.color``; the
    release's files are BGR) and it differs from ``cfg.data.color``, this raises ConfigError:
    features of a network fed the other channel order are silently worse, which would put a wrong
    number in a table. When the file does not say (bare / torchvision state dicts), a warning
    names the order used. Weights holding NaN or inf are refused (``require_finite``).

    Returns:
        {"init": "random"|"checkpoint", "checkpoint": path or None, "init_source": ...,
         "load_summary": one line}.
    Raises:
        CheckpointError: unreadable file or backbone mismatch.
        ConfigError: channel-order mismatch.
    """
    if not cfg.checkpoint:
        logger.info("no --checkpoint: random initialisation (the from-scratch baseline)")
        return {"init": "random", "checkpoint": None, "init_source": None,
                "load_summary": "random initialisation"}
    report = load_backbone_weights(backbone, cfg.checkpoint, trust_checkpoint=cfg.trust_checkpoint)
    require_finite(backbone.state_dict(), f"{cfg.checkpoint}: its backbone weights",
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


def load_summary(path: str, report: LoadReport) -> str:
    """One line describing a LoadReport."""
    prefixes = sorted({k.split(".")[0] for k in report.ignored})
    ignored = f"{len(report.ignored)} keys ignored" + (f" ({', '.join(prefixes[:6])})"
                                                       if prefixes else "")
    missing = f"; {len(report.missing)} optional keys absent" if report.missing else ""
    return (f"loaded {len(report.loaded)} backbone tensors from {path} ({report.source} format, "
            f"channel order {report.color or 'not recorded'}); {ignored}{missing}")


def read_checkpoint(path: str | os.PathLike, trust_checkpoint: bool = False) -> object:
    """torch.load on CPU, safe (weights_only=True) unless the file needs and is given trust.

    Raises:
        CheckpointError: missing, truncated or corrupt file, or pickled objects without trust.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file (a run's "
                              "checkpoints are files in its checkpoints/ folder, e.g. latest.pth)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch >= 2.4: "Unsupported global: GLOBAL <name>"; torch 2.3: "Unsupported class <name>"
        blocked = re.search(r"Unsupported (?:global: GLOBAL|class) (\S+)", str(err))
        if blocked is None:
            raise _corrupt(path, err) from err
        if not trust_checkpoint:
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects besides tensors (first: "
                f"{blocked.group(1)}; the authors' released checkpoints hold a GradScaler), which the "
                f"safe loader refuses. Unpickling them can run arbitrary code from the file: if you "
                f"trust the file, pass --trust-checkpoint true (trust_checkpoint=True). If the "
                f"object name looks cut off, the file may instead be truncated."
            ) from err
    except LOAD_ERRORS as err:
        raise _corrupt(path, err) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, AttributeError, ImportError, *LOAD_ERRORS) as err:
        raise _corrupt(path, err) from err


def check_checkpoint_file(path: Path) -> None:
    """Refuse, by its first bytes, a file that cannot be read or is no checkpoint at all, before
    torch.load calls it "truncated or corrupt".

    Raises:
        CheckpointError: permission denied (or another read error), or a JSON or text file.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        why = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
        raise CheckpointError(f"cannot read checkpoint {path}: {why}; fix its permissions or "
                              "point --checkpoint / --resume at another file") from None
    if head.startswith((b"PK\x03\x04", b"\x80")) or not head:   # zip (torch.save) or pickle
        return
    text = head.lstrip()
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(text) - 4:    # a multi-byte character cut by the 512-byte read is text
            return
    kind = "a JSON file" if text[:1] in (b"{", b"[") else "a text file"
    first = text.split(b"\n", 1)[0][:60].decode("utf-8", errors="replace")
    raise CheckpointError(f"{path} is not a checkpoint: {kind} (it begins {first!r}); "
                          "point --checkpoint / --resume at a .pth file written by torch.save")


def _corrupt(path: Path, err: Exception) -> CheckpointError:
    reason = _first_line(err)
    return CheckpointError(f"cannot read checkpoint {path}: file is truncated or corrupt "
                           f"({reason}); copy or download it again, or point --checkpoint / "
                           "--resume at another checkpoint")


def _first_line(err: Exception) -> str:
    """The informative line of a loader error (torch's weights-only errors put it after a preamble)."""
    text = str(err)
    detail = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _unwrap(raw: object, where: str) -> tuple[dict, str | None, str, dict]:
    """Find the state dict in a checkpoint; returns (state, color, source, meta)."""
    if not isinstance(raw, Mapping):
        kind = type(raw).__name__
        raise CheckpointError(f"{where}: expected a checkpoint dict or a state dict, found a {kind}")
    if "format" in raw:
        if raw["format"] != PROJECT_FORMAT or not isinstance(raw.get("model"), Mapping):
            raise CheckpointError(
                f"{where}: unknown checkpoint format {raw['format']!r} "
                f"(expected {PROJECT_FORMAT!r} with a 'model' dict)"
            )
        meta = dict(raw.get("meta") or {})
        state, color, source = raw["model"], meta.get("color"), PROJECT_FORMAT
    elif any(isinstance(raw.get(key), Mapping) for key in RELEASE_STATE_KEYS):
        key = next(key for key in RELEASE_STATE_KEYS if isinstance(raw.get(key), Mapping))
        state, color, source, meta = raw[key], RELEASE_COLOR, "release", {}
    else:
        has_fc = any(key.split("module.")[-1] == "fc.weight" for key in raw)
        state, color, source, meta = raw, None, "torchvision" if has_fc else "state_dict", {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where}: state dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                f"this is not a state dict or checkpoint layout this loader knows"
            )
    return dict(state), color, source, meta


def check_r2plus1d_layout(state: Mapping, where: str) -> None:
    """Refuse R(2+1)D-18 weights in this project's earlier layer4 layout, naming the change.

    Before, layer4[0].conv1 kept its (2+1)D pair (1x3x3 spatial conv, BN, 3x1x1 temporal conv with
    temporal dilation); now it is the release's single dilated 3x3x3 Conv3d. The old tensors
    cannot be turned into the new one, so such files fail here instead of half-loading.

    Args:
        state: a state dict (any prefix: bare, "backbone.", "module.0.", ...).
        where: the file (or "<in-memory state dict>") for the message.

    Raises:
        CheckpointError: when a key ends with layer4.0.conv1.0.3.weight.
    """
    old = next((key for key in state if key.endswith(OLD_R2PLUS1D_LAYER4_KEY)), None)
    if old is not None:
        raise CheckpointError(
            f"{where}: key {old!r} shows R(2+1)D-18 weights in this project's earlier layer4 "
            f"layout (layer4[0].conv1 as a (2+1)D pair with a dilated temporal conv). R(2+1)D-18 "
            f"is now built as the release builds it: layer4[0].conv1[0] is one full dilated "
            f"3x3x3 Conv3d (key 'layer4.0.conv1.0.weight'), so these weights cannot be loaded or "
            f"converted; pretrain again (or use the release's R(2+1)D-18 weights)"
        )


def _check_meta(backbone: nn.Module, meta: dict, where: str) -> None:
    """Compare this project's checkpoint metadata with the backbone, for a clearer error."""
    for field in ("backbone", "width"):
        ours = getattr(backbone, "name" if field == "backbone" else field, None)
        theirs = meta.get(field)
        if ours is not None and theirs is not None and ours != theirs:
            raise CheckpointError(
                f"{where}: checkpoint holds a {meta.get('backbone')} backbone of width "
                f"{meta.get('width')}, but {_describe(backbone)}; build the model with the "
                f"checkpoint's backbone and width (--backbone {meta.get('backbone')} --width "
                f"{meta.get('width')})"
            )


def _backbone_prefix(state: dict, wanted: Mapping) -> str:
    """The prefix under which most of the backbone's keys appear in `state` (first wins ties)."""

    def hits(prefix: str) -> int:
        return sum(1 for key in state if key.startswith(prefix) and key[len(prefix):] in wanted)

    return max(BACKBONE_PREFIXES, key=hits)


def _match_backbone_keys(
    state: dict, wanted: Mapping, prefix: str, where: str, backbone: nn.Module
) -> dict[str, torch.Tensor]:
    """Backbone key -> tensor from `state`; raises on the first missing key or wrong shape."""
    found = {}
    for key, target in wanted.items():
        value = state.get(prefix + key)
        in_file = f" (file key {prefix + key!r})" if prefix else ""
        if value is None:
            if key.endswith(OPTIONAL_KEY_SUFFIXES):
                continue
            raise CheckpointError(
                f"{where}: backbone key {key!r} is missing{in_file}; "
                f"{_describe(backbone)}; {_guess_architecture(state)}"
            )
        if value.shape != target.shape:
            raise CheckpointError(
                f"{where}: shape mismatch at backbone key {key!r}{in_file}: file has "
                f"{tuple(value.shape)}, the model expects {tuple(target.shape)}; {_describe(backbone)}; "
                f"{_guess_architecture(state)}"
            )
        found[key] = value
    return found


def _describe(backbone: nn.Module) -> str:
    name = getattr(backbone, "name", type(backbone).__name__)
    return f"the model is {name} of width {getattr(backbone, 'width', '?')}"


def _find(state: dict, suffix: str) -> torch.Tensor | None:
    for prefix in BACKBONE_PREFIXES:
        if prefix + suffix in state:
            return state[prefix + suffix]
    return None


def _guess_architecture(state: dict) -> str:
    """A hint naming the backbone the file seems to hold, from telltale keys."""
    if (conv := _find(state, "conv3a.weight")) is not None:
        return f"the file seems to hold a c3d backbone of width {conv.shape[0] // 4}"
    if (conv := _find(state, "stem.3.weight")) is not None:
        return f"the file seems to hold an r2plus1d18 backbone of width {conv.shape[0]}"
    if (conv := _find(state, "stem.0.weight")) is not None and conv.dim() == 5 and conv.shape[2] == 3:
        return f"the file seems to hold an r3d18 backbone of width {conv.shape[0]}"
    return f"the file does not look like a known backbone (first keys: {list(state)[:3]})"
