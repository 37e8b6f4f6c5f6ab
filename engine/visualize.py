"""Pictures of what was learned and how training went, as matplotlib figures.

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
display, no global figure state; PNGs are rendered by the Agg canvas). :func:`save_figure` writes
one as PNG and, given a TensorBoard writer, also sends it there with ``add_figure``.

- :func:`confusion_figure`: row-normalised confusion matrix with class names, colour bar and a
  worst-classes panel for large class sets (sorted by per-class accuracy).
- :func:`retrieval_figure`: each query and its nearest gallery videos as filmstrips (several frames
  across the clip), the class name under each, same-class neighbours marked by a tick and a solid
  frame, other-class ones by a cross and a dashed frame (readable in greyscale too).
- :func:`similarity_figure`: T' x T' timestep-similarity heatmaps side by side on one colour scale.
- :func:`training_curves_figure`: every loss term and the learning rate of a run's ``log.jsonl``,
  and the pretraining monitor's scores (engine.monitor) when the log has them.
- :func:`monitor_curves_figure`: the monitor's Recall@1 and timestep similarity of several runs
  against step (the learning demo's IC only vs TCLR).
- :func:`recall_curve_figure`: Recall@k against k, beside the recall of a random ranking.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from atomic_io import atomic_write, write_error

CMAP = "Blues"
TICK = "\u2713"     # same class as the query
CROSS = "\u2717"    # another class
SAME_COLOR = "#1a9641"
OTHER_COLOR = "#d7191c"
QUERY_COLOR = "#2b5fd9"
NEUTRAL_COLOR = "#555555"   # a neighbour of an unlabelled query


def save_figure(fig: Figure, path: str | os.PathLike, tb_writer=None, tag: str | None = None,
                dpi: int = 100) -> Path:
    """Write ``fig`` as PNG (creating the folder); also to TensorBoard when a writer is given.

    Args:
        fig: the figure (closed afterwards when it went to TensorBoard).
        path: the PNG file.
        tb_writer: a ``SummaryWriter`` or None.
        tag: the TensorBoard tag (required with ``tb_writer``).
        dpi: resolution of the PNG.
    Returns:
        The PNG path.
    """
    path = Path(path)
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi,
                                                  facecolor="white"), "picture")
    if tb_writer is not None:
        if not tag:
            raise ValueError("save_figure: a TensorBoard writer needs a tag")
        try:
            tb_writer.add_figure(tag, fig, global_step=0)
        except (OSError, RuntimeError) as exc:   # the event writer's thread failed to write
            error = write_error(tb_writer.log_dir, exc, "TensorBoard events", kept=False)
            if error is None:
                raise
            raise error from exc
    return path


def _font_for(count: int, space_in: float) -> float:
    """A tick-label font size (points) that fits ``count`` labels into ``space_in`` inches."""
    return float(np.clip(space_in * 72.0 / max(count, 1) * 0.8, 3.0, 10.0))


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------

def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "",
                     worst: int = 20, sort_above: int = 30) -> Figure:
    """Row-normalised confusion matrix (rows = true class, columns = predicted).

    Each cell is the fraction of the true class's test videos predicted as the column's class, so
    the diagonal is the per-class accuracy (recall). Up to ``sort_above`` classes the matrix keeps
    the dataset's class order and every cell shows its percentage. Above that (UCF101's 101,
    HMDB51's 51) classes are sorted by accuracy, best first, and a second panel lists the
    ``worst`` classes with their accuracy and the class they are most often mistaken for.

    Args:
        cm: [C, C] integer counts.
        class_names: C names.
        title: first title line (e.g. checkpoint, split and top-1).
        worst: classes in the worst-classes panel.
        sort_above: class count from which rows and columns are sorted and the panel is added.
    Returns:
        The figure.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    if cm.shape != (n, n) or len(class_names) != n:
        raise ValueError(f"confusion_figure: matrix {cm.shape} and {len(class_names)} class names "
                         "disagree")
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support[:, None] > 0, cm / np.maximum(support[:, None], 1), np.nan)
    acc = np.diag(norm)                                               # [C], NaN without videos
    large = n > sort_above
    order = (np.lexsort((np.arange(n), -np.nan_to_num(acc, nan=-1.0))) if large
             else np.arange(n))
    side = float(np.clip(0.32 * n, 4.5, 15.0))                     # inches of the matrix panel
    width = side + 2.5 + (6.5 if large else 0.0)
    fig = Figure(figsize=(width, side + 3.2), layout="constrained")
    ax_worst = None
    if large:
        panel_h = min(side, 0.3 * min(worst, n) + 1.0)
        grid = fig.add_gridspec(2, 2, width_ratios=[side + 1.5, 5.5],
                                height_ratios=[panel_h, side + 3.2 - panel_h])
        ax, ax_worst = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[0, 1])
    else:
        ax = fig.subplots(1, 1)
    shown = norm[np.ix_(order, order)]
    names = [str(class_names[i]) for i in order]
    # square-root colour scale: the few-percent confusions of a large set stay visible
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=CMAP, norm=PowerNorm(0.5, 0.0, 1.0),
                   interpolation="nearest")
    font = _font_for(n, side)
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class" + (" (sorted by accuracy, best first)" if large else ""))
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if np.isfinite(shown[i, j]) and cm[order[i], order[j]] > 0:
                    ax.text(j, i, f"{shown[i, j]:.0%}\n({int(cm[order[i], order[j]])})",
                            ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.4 else "black")
    fig.colorbar(im, ax=ax, shrink=0.6, pad=0.01, label="fraction of the true class's videos "
                 "(square-root scale)")
    total = int(support.sum())
    correct = int(np.trace(cm))
    subtitle = f"{n} classes, {total} test videos, {correct} correct"
    ax.set_title((title + "\n" if title else "") + subtitle, fontsize=11)
    if ax_worst is not None:
        _worst_panel(ax_worst, cm, norm, acc, class_names, worst)
    return fig


def _worst_panel(ax, cm: np.ndarray, norm: np.ndarray, acc: np.ndarray,
                 class_names: Sequence[str], worst: int) -> None:
    """Horizontal bars of the lowest per-class accuracies, each with its commonest confusion."""
    n = cm.shape[0]
    listed = [i for i in np.argsort(np.nan_to_num(acc, nan=np.inf), kind="stable")
              if np.isfinite(acc[i])][:worst]
    ys = np.arange(len(listed))
    ax.barh(ys, [100 * acc[i] for i in listed], color="#9ecae1", edgecolor="#08519c")
    ax.set_yticks(ys, [str(class_names[i]) for i in listed], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("per-class accuracy (%)")
    ax.set_title(f"the {len(listed)} worst classes: accuracy \u2192 commonest wrong prediction",
                 fontsize=10)
    for y, i in zip(ys, listed):
        off = cm[i].copy()
        off[i] = -1
        j = int(np.argmax(off))
        label = f"{100 * acc[i]:.0f}%"
        if n > 1 and off[j] > 0:
            label += f"  \u2192 {class_names[j]} ({100 * norm[i, j]:.0f}%)"
        ax.text(100 * acc[i] + 1, y, label, va="center", fontsize=7)


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------

def filmstrip_indices(frame_count: int, frames: int = 4) -> list[int]:
    """``frames`` frame indices spread evenly over a video of ``frame_count`` frames (centres of
    equal segments, so the strip spans the clip without its very first and last frame)."""
    count = max(1, frame_count)
    return sorted({min(count - 1, int((i + 0.5) * count / frames)) for i in range(frames)})


def filmstrip(path: str, frames: int = 4, height: int = 64) -> np.ndarray:
    """Several frames across a video, side by side, as uint8 [height, W, 3] RGB (aspect kept).

    Raises:
        dataloaders.video.VideoDecodeError: when the video cannot be read.
    """
    import cv2

    from dataloaders.video import decode_frames, probe_video
    decoded = decode_frames(path, filmstrip_indices(probe_video(path).frame_count, frames),
                            color="rgb")
    if len(decoded.indices) < frames and decoded.real_frame_count:   # the header overstated it
        decoded = decode_frames(path, filmstrip_indices(decoded.real_frame_count, frames),
                                color="rgb")
    images = []
    for frame in decoded.frames:                                      # [H0, W0, 3]
        width = max(1, round(frame.shape[1] * height / frame.shape[0]))
        images.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
        images.append(np.full((height, 2, 3), 255, dtype=np.uint8))  # white gap between frames
    return np.concatenate(images[:-1], axis=1)


def retrieval_figure(query_strips: Sequence[np.ndarray], neighbour_strips: Sequence[Sequence],
                     correct: np.ndarray | None, query_names: Sequence[str],
                     neighbour_names: Sequence[Sequence[str]], title: str = "",
                     query_heading: str = "test query") -> Figure:
    """Queries (left column) and their nearest gallery videos (right, nearest first).

    Args:
        query_strips: Q filmstrips, uint8 [h, w, 3] each (see :func:`filmstrip`).
        neighbour_strips: Q rows of k filmstrips.
        correct: bool [Q, k], True where the neighbour has the query's class; None for unlabelled
            videos (scripts/search_features.py): every neighbour gets a plain frame.
        query_names, neighbour_names: the labels under the strips (class names, or file names and
            similarities), [Q] and [Q][k].
        title: figure title.
        query_heading: the title above the query column.
    Returns:
        The figure: a tick and a solid frame mark same-class neighbours, a cross and a dashed
        frame other-class ones (the marks survive greyscale printing).
    """
    labelled = correct is not None
    q, k = len(query_strips), len(neighbour_strips[0]) if neighbour_strips else 0
    correct = np.asarray(correct if labelled else np.ones((q, k)), dtype=bool)
    if (len(neighbour_strips) != correct.shape[0] or q != correct.shape[0]
            or any(len(row) != correct.shape[1] for row in neighbour_strips)):
        raise ValueError(f"retrieval_figure: {len(query_strips)} queries and neighbour rows "
                         f"{[len(r) for r in neighbour_strips]} disagree with correct "
                         f"{correct.shape}")
    q, k = correct.shape
    aspect = float(np.mean([s.shape[1] / s.shape[0] for s in query_strips]))   # width / height
    cell_w = float(np.clip(0.85 * aspect, 1.6, 3.6))                # inches per filmstrip
    cell_h = cell_w / aspect
    fig = Figure(figsize=((k + 1.15) * cell_w, q * (cell_h + 0.3) + 0.8), layout="constrained")
    axes = fig.subplots(q, k + 2, squeeze=False, width_ratios=[1.0, 0.15] + [1.0] * k)
    for row in range(q):
        axes[row, 1].axis("off")                                     # gap: query | neighbours
        _strip(axes[row, 0], query_strips[row], f"query: {query_names[row]}", QUERY_COLOR, "-")
        for j in range(k):
            ok = bool(correct[row, j])
            mark = (TICK if ok else CROSS) + " " if labelled else ""
            _strip(axes[row, j + 2], neighbour_strips[row][j], mark + neighbour_names[row][j],
                   (SAME_COLOR if ok else OTHER_COLOR) if labelled else NEUTRAL_COLOR,
                   "-" if ok else "--")
    axes[0, 0].set_title(query_heading, fontsize=9, fontweight="bold")
    for j in range(k):
        axes[0, j + 2].set_title(f"neighbour {j + 1}", fontsize=9, fontweight="bold")
    if labelled:
        hits = int(correct[:, 0].sum())
        legend = (f"{TICK} solid frame = same class as the query, {CROSS} dashed = other class; "
                  f"nearest neighbour correct for {hits} of {q} queries")
    else:
        legend = "nearest first; under each video its cosine similarity to the query"
    fig.suptitle((title + "\n" if title else "") + legend, fontsize=10)
    return fig


def _strip(ax, image: np.ndarray, label: str, color: str, linestyle: str) -> None:
    ax.imshow(image, aspect="equal", interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(3.0)
        spine.set_linestyle(linestyle)
    ax.set_xlabel(label, fontsize=8, labelpad=2)


# --------------------------------------------------------------------------------------------
# Temporal similarity
# --------------------------------------------------------------------------------------------

def similarity_figure(matrices: Mapping[str, np.ndarray], means: Mapping[str, float],
                      title: str = "") -> Figure:
    """T' x T' cosine similarities between feature-map timesteps, one panel per checkpoint.

    Args:
        matrices: label -> [T', T'] similarity matrix (values in [0, 1]).
        means: label -> mean off-diagonal value, printed on the panel.
        title: figure title.
    Returns:
        The figure; every panel uses the colour scale [0, 1], so panels compare directly.
    """
    labels = list(matrices)
    if not labels:
        raise ValueError("similarity_figure: no matrices")
    fig = Figure(figsize=(max(6.8, 3.4 * len(labels) + 1.4), 4.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(labels), sharey=True))
    im = None
    for ax, label in zip(axes, labels):
        m = np.asarray(matrices[label], dtype=np.float64)
        t = m.shape[0]
        im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(t))
        ax.set_yticks(range(t))
        ax.set_xlabel("timestep")
        if t <= 8:
            for i in range(t):
                for j in range(t):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if m[i, j] > 0.6 else "white")
        ax.set_title(f"{label}\nmean off-diagonal {means[label]:.3f}", fontsize=10)
    axes[0].set_ylabel("timestep")
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="cosine similarity")
    fig.suptitle(title or "similarity between the timesteps of the feature map "
                          "(lower off-diagonal = more temporal diversity)", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# Training curves and Recall@k
# --------------------------------------------------------------------------------------------

def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of ``<run_dir>/log.jsonl`` (final-result records left out); a last
    line cut by a kill is ignored with a warning on stderr.

    Raises:
        FileNotFoundError: naming the file when the run folder has no log.
        engine.logging.JsonlError: a line before the last is not JSON.
    """
    import sys

    from engine.logging import read_jsonl
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    records, _cut = read_jsonl(path, warn=lambda text: print(text, file=sys.stderr))
    return [r for r in records if "epoch" in r and not r.get("final") and "monitor" not in r]


def read_monitor_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The pretraining monitor's records of ``<run_dir>/log.jsonl`` (engine.monitor) as flat dicts
    with ``epoch`` and ``step``, in epoch order (a resumed run's repeated epoch: the last wins).

    Raises:
        FileNotFoundError: naming the file when the run folder has no log.
    """
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    from engine.logging import read_jsonl
    rows: dict[int, dict[str, Any]] = {}
    records, _cut = read_jsonl(path, warn=None)     # read_log has warned about a cut line
    for record in records:
        if isinstance(record.get("monitor"), dict):
            rows[int(record["epoch"])] = {"epoch": record["epoch"], "step": record["step"],
                                          **record["monitor"]}
    return [rows[e] for e in sorted(rows)]


def training_curves_figure(records: Sequence[Mapping[str, Any]], title: str = "",
                           monitor: Sequence[Mapping[str, Any]] = ()) -> Figure:
    """Every loss term and the learning rate of a run against its training step.

    Args:
        records: per-epoch records of log.jsonl (pretraining: ``step``, ``lr``, ``loss_*``;
            classification: ``epoch``, ``lr``, ``loss`` and accuracies). A run resumed into the
            same folder repeats epochs; the last record of each epoch wins.
        title: figure title (e.g. the run folder).
        monitor: the pretraining monitor's records (:func:`read_monitor_log`); when given, a
            panel of its scores follows the total loss.
    Returns:
        Panels sharing the x axis: the total loss (``loss`` or ``loss_total``), the monitor's
        scores (when given), the other ``loss_*`` terms, the learning rate (log scale). x is the
        global step at the end of each epoch when the records have one, else the number of
        epochs done.
    """
    by_epoch = {int(r["epoch"]): r for r in records}
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    if not rows:
        raise ValueError("training_curves_figure: the log has no epoch records")
    use_step = all("step" in r for r in rows)
    xs = [r["step"] if use_step else r["epoch"] + 1 for r in rows]
    keys = [k for k in rows[0] if k.startswith("loss") and isinstance(rows[0][k], (int, float))]
    totals = [k for k in keys if k in ("loss", "loss_total")]
    terms = [k for k in keys if k not in totals]
    # the total (a sum of terms) gets its own panel, so that the terms keep a readable scale
    panels = [group for group in (totals, terms) if group]
    if not panels:
        raise ValueError("training_curves_figure: the records hold no loss value")
    extra = 1 if monitor else 0
    fig = Figure(figsize=(8.0, 3.0 + 2.4 * (len(panels) + extra)), layout="constrained")
    *loss_axes, ax_lr = fig.subplots(len(panels) + extra + 1, 1, sharex=True,
                                     height_ratios=[2] * (len(panels) + extra) + [1.2])
    if monitor:
        _monitor_panel(loss_axes.pop(1), monitor)
    for ax, group in zip(loss_axes, panels):
        for key in group:
            total = key in totals
            ax.plot(xs, [r.get(key, np.nan) for r in rows], marker="o", markersize=3,
                    linewidth=2.2 if total else 1.4, label=key.removeprefix("loss_"),
                    color="black" if total else None)
        ax.set_ylabel("epoch-mean " + ("loss" if group is totals else "loss term"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncols=min(len(group), 4))
    ax_loss = loss_axes[0]
    ax_lr.plot(xs, [r["lr"] for r in rows], marker="o", markersize=3, color="tab:purple")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("training step (end of epoch)" if use_step else "epochs done")
    ax_lr.grid(alpha=0.3, which="both")
    span = f"{len(rows)} epochs" + (f", {xs[-1]} steps" if use_step else "")
    ax_loss.set_title((title + "\n" if title else "") + span, fontsize=10)
    return fig


def _monitor_panel(ax, monitor: Sequence[Mapping[str, Any]]) -> None:
    """Recall@1/5 and kNN top-1 (left axis, %) and timestep similarity (right axis) by step."""
    xs = [r["step"] for r in monitor]
    drawn = False
    for key, style in (("recall@1", "-o"), ("recall@5", ":o"), ("knn_top1", "--s")):
        ys = [np.nan if r.get(key) is None else r[key] for r in monitor]
        if not all(np.isnan(ys)):
            ax.plot(xs, ys, style, markersize=3, label=f"monitor {key.replace('_', ' ')} (%)")
            drawn = True
    ax.set_ylabel("monitor score (%)" if drawn else "")
    if drawn:
        ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    sims = [np.nan if r.get("timestep_similarity") is None else r["timestep_similarity"]
            for r in monitor]
    twin.plot(xs, sims, "-^", color="tab:brown", markersize=3,
              label="timestep similarity (right)")
    twin.set_ylim(0, 1)
    twin.set_ylabel("timestep similarity")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower left",
              ncols=2)
    ax.set_title(f"monitor ({monitor[-1].get('videos', '?')} train videos, leave-one-out; "
                 "lower timestep similarity = more temporal diversity)", fontsize=9)


def monitor_curves_figure(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
                          title: str = "") -> Figure:
    """The monitor's Recall@1 and timestep similarity against step, several runs side by side.

    Args:
        runs: label -> the monitor records (:func:`read_monitor_log`) of each run under that
            label (e.g. one per seed); a label's runs share a colour, their mean is the thick line.
        title: figure title.
    """
    if not runs or not any(runs.values()):
        raise ValueError("monitor_curves_figure: no run with monitor records")
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    ax_r, ax_s = fig.subplots(1, 2, sharex=True)
    for i, (label, series) in enumerate(runs.items()):
        color = f"C{i}"
        for key, ax in (("recall@1", ax_r), ("timestep_similarity", ax_s)):
            curves = [([r["step"] for r in recs],
                       [np.nan if r.get(key) is None else r[key] for r in recs])
                      for recs in series if recs]
            for xs, ys in curves:
                ax.plot(xs, ys, color=color, alpha=0.35, linewidth=1)
            steps = sorted(set.intersection(*(set(xs) for xs, _ in curves)))
            mean = [np.nanmean([ys[xs.index(s)] for xs, ys in curves]) for s in steps]
            ax.plot(steps, mean, "-o", color=color, linewidth=2.2, markersize=3,
                    label=f"{label} ({len(curves)} run{'s' if len(curves) > 1 else ''})")
    ax_r.set_ylabel("monitor Recall@1 (%)")
    ax_s.set_ylabel("timestep similarity (mean off-diagonal)")
    ax_s.set_ylim(0, 1)
    for ax in (ax_r, ax_s):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_r.set_title("Recall@1 on the train-split monitor set (leave-one-out)", fontsize=10)
    ax_s.set_title("temporal diversity (lower = timesteps differ more)", fontsize=10)
    fig.suptitle(title or "the pretraining monitor: thin lines = runs, thick = their mean",
                 fontsize=11)
    return fig


def recall_curve_figure(recalls: Mapping[int, float], chance: Mapping[int, float] | None = None,
                        title: str = "") -> Figure:
    """Recall@k (percent) against k, log-scaled k axis, each point labelled with its value.

    Args:
        recalls: {k: recall in percent}.
        chance: {k: recall of a random ranking in percent} (``metrics.chance_recall_at_k``).
        title: figure title.
    """
    ks = sorted(recalls)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(ks, [recalls[k] for k in ks], marker="o", linewidth=2, label="this backbone")
    for k in ks:
        ax.annotate(f"{recalls[k]:.1f}", (k, recalls[k]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)
    if chance:
        ck = sorted(chance)
        ax.plot(ck, [chance[k] for k in ck], linestyle="--", marker="x", color="grey",
                label="random ranking (chance)")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_ylim(0, 110)
    ax.set_xlabel("k (nearest gallery videos considered)")
    ax.set_ylabel("Recall@k (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Recall@k: a query counts when any of its k nearest has its class",
                 fontsize=10)
    return fig


def write_training_curves(run_dir: str | os.PathLike, tb_writer=None) -> Path | None:
    """``<run_dir>/training_curves.png`` from its log.jsonl (and TensorBoard when given).

    Returns:
        The PNG path, or None when the log has no epoch record yet (nothing to draw).
    Raises:
        FileNotFoundError: when the folder has no log.jsonl.
    """
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    if not records:
        return None
    fig = training_curves_figure(records, title=f"training curves of {run_dir}",
                                 monitor=read_monitor_log(run_dir))
    return save_figure(fig, run_dir / "training_curves.png", tb_writer, "train/curves")
