"""Evaluation metrics: top-k accuracy, per-video clip averaging, Recall@k, per-class accuracy,
confusion matrices, and mean/std aggregation of several runs' results.json.

Every accuracy and recall here is a percentage (0-100), as results.json stores them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomic_io import write_text


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
                 ) -> dict[int, int]:
    """Number of rows whose label is among their k highest scores.

    Args:
        scores: [N, C] class scores (logits or probabilities; only their order matters).
        labels: [N] integer class indices.
        ks: the k values. A k larger than C is capped at C (every video then counts as a hit).
    Returns:
        {k: count of hits}.
    """
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"expected scores [N, C] and labels [N], got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    n, num_classes = scores.shape
    if n == 0:
        return {k: 0 for k in ks}
    top = scores.topk(min(max(ks), num_classes), dim=1).indices      # [N, kmax]
    hits = top == labels.view(-1, 1)                                  # [N, kmax]
    return {k: int(hits[:, :min(k, num_classes)].any(dim=1).sum().item()) for k in ks}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
                  ) -> dict[int, float]:
    """Top-k accuracy in percent (arguments as :func:`topk_correct`).

    Returns:
        {k: percentage of rows whose label is among the k highest scores}; 0.0 for N = 0.
    """
    n = scores.shape[0] if scores.dim() == 2 else 0
    return {k: 100.0 * c / n if n else 0.0 for k, c in topk_correct(scores, labels, ks).items()}


PERCENT_DIGITS = 2   # results.json precision of accuracies and recalls (0.01 points)


def round_percent(value: float | None) -> float | None:
    """A percentage rounded for results.json (None stays None); the exact counts sit beside it."""
    return None if value is None else round(float(value), PERCENT_DIGITS)


class VideoScoreAccumulator:
    """Collects per-video class probabilities, each video exactly once.

    Multi-clip evaluation computes, for each video, the softmax of every clip's logits and averages
    them over the video's clips. Under torchrun the DistributedSampler pads the last shard by
    repeating videos; adding a video id a second time is ignored (the padded copy sees the same
    clips, so its scores are identical), which restores "every video exactly once".
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self._probs: dict[int, torch.Tensor] = {}
        self._labels: dict[int, int] = {}
        self.duplicates = 0

    def add(self, video_ids: Sequence[int], probs: torch.Tensor, labels: Sequence[int]) -> None:
        """Record clip-averaged probabilities.

        Args:
            video_ids: [B] dataset indices of the videos.
            probs: [B, classes] probabilities already averaged over each video's clips.
            labels: [B] class indices.
        """
        probs = probs.detach().float().cpu()
        for vid, p, y in zip(video_ids, probs, labels):
            vid = int(vid)
            if vid in self._probs:
                self.duplicates += 1
                continue
            self._probs[vid] = p
            self._labels[vid] = int(y)

    def merge(self, other: "VideoScoreAccumulator") -> None:
        """Add another accumulator's videos (e.g. gathered from another process)."""
        for vid in sorted(other._probs):
            self.add([vid], other._probs[vid].unsqueeze(0), [other._labels[vid]])

    def __len__(self) -> int:
        return len(self._probs)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(video_ids [V], probs [V, classes], labels [V]) sorted by video id."""
        ids = sorted(self._probs)
        if not ids:
            return (torch.zeros(0, dtype=torch.long), torch.zeros(0, self.num_classes),
                    torch.zeros(0, dtype=torch.long))
        return (torch.tensor(ids, dtype=torch.long), torch.stack([self._probs[i] for i in ids]),
                torch.tensor([self._labels[i] for i in ids], dtype=torch.long))

    def state(self) -> dict[str, Any]:
        """Plain-data form for all_gather_objects."""
        ids, probs, labels = self.result()
        return {"ids": ids, "probs": probs, "labels": labels}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], num_classes: int) -> "VideoScoreAccumulator":
        acc = cls(num_classes)
        acc.add(state["ids"].tolist(), state["probs"], state["labels"].tolist())
        return acc


def clip_softmax_average(logits: torch.Tensor, clip_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-video softmax averaged over clips: logits [B, C_clips, classes] -> [B, classes].

    clip_mask: bool [B, C_clips], the clips to average (MultiClipDataset's "clip_mask"); None = all.
    """
    return masked_clip_mean(logits.float().softmax(dim=-1), clip_mask)


def masked_clip_mean(values: torch.Tensor, clip_mask: torch.Tensor | None = None) -> torch.Tensor:
    """values [B, C_clips, D] averaged over the clips where clip_mask [B, C_clips] is True: [B, D]."""
    if clip_mask is None:
        return values.mean(dim=1)
    weights = clip_mask.to(values.device, values.dtype).unsqueeze(-1)       # [B, C_clips, 1]
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


def per_class_accuracy(preds: np.ndarray, labels: np.ndarray, num_classes: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class top-1 accuracy.

    Args:
        preds, labels: [N] integer predicted and true class indices.
        num_classes: number of classes (classes without test videos get NaN accuracy).
    Returns:
        (accuracy [num_classes] in percent, support [num_classes] = test videos per class).
    """
    cm = confusion(preds, labels, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, 100.0 * np.diag(cm) / np.maximum(support, 1), np.nan)
    return acc, support


def confusion(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix [num_classes, num_classes] (rows = true class, columns = predicted),
    by scikit-learn, with every class present even when it has no video."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(np.asarray(labels), np.asarray(preds), labels=list(range(num_classes)))


def write_per_class_csv(path: str | os.PathLike, class_names: Sequence[str], acc: np.ndarray,
                        support: np.ndarray) -> Path:
    """CSV with columns class_index, class_name, num_videos, top1 (percent, empty when no video)."""
    path = Path(path)
    lines = ["class_index,class_name,num_videos,top1"]
    for i, name in enumerate(class_names):
        value = "" if math.isnan(acc[i]) else f"{acc[i]:.2f}"
        lines.append(f"{i},{_csv_field(name)},{int(support[i])},{value}")
    return write_text(path, "\n".join(lines) + "\n", "table")


def write_confusion_csv(path: str | os.PathLike, class_names: Sequence[str],
                        cm: np.ndarray) -> Path:
    """CSV of the confusion matrix: header row of predicted classes, one row per true class."""
    path = Path(path)
    lines = ["true\\predicted," + ",".join(_csv_field(n) for n in class_names)]
    for name, row in zip(class_names, cm):
        lines.append(_csv_field(name) + "," + ",".join(str(int(v)) for v in row))
    return write_text(path, "\n".join(lines) + "\n", "table")


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------

def l2_normalize(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm: [N, D] -> [N, D] (all-zero rows stay zero)."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(eps)


def nearest_neighbours(queries: torch.Tensor, gallery: torch.Tensor, k: int,
                       chunk: int = 4096) -> torch.Tensor:
    """Indices of the k most cosine-similar gallery rows for every query.

    Args:
        queries: [Q, D], gallery: [G, D] (normalised here, so any scale works).
        k: neighbours wanted; capped at G.
        chunk: queries per similarity block (bounds memory at chunk x G).
    Returns:
        [Q, min(k, G)] gallery indices, most similar first. Ties are broken by the lower index.
    """
    q = l2_normalize(queries.float())
    g = l2_normalize(gallery.float())
    k = min(k, g.shape[0])
    out = []
    for start in range(0, q.shape[0], chunk):
        sim = q[start:start + chunk] @ g.T                               # [q, G]
        # stable order for equal similarities: sort by (-sim, index)
        order = torch.sort(-sim, dim=1, stable=True).indices[:, :k]      # [q, k]
        out.append(order)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)


def retrieval_hits(neighbours: torch.Tensor, query_labels: torch.Tensor,
                   gallery_labels: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Which queries are hits at each k.

    Args:
        neighbours: [Q, K] gallery indices, nearest first (K >= every k, or the gallery size).
        query_labels: [Q]; gallery_labels: [G].
        ks: k values (capped at K).
    Returns:
        bool [Q, len(ks)]: True where any of the query's k nearest has its class.
    """
    match = gallery_labels[neighbours] == query_labels.view(-1, 1)     # [Q, K]
    kmax = neighbours.shape[1]
    return torch.stack([match[:, :min(k, kmax)].any(dim=1) for k in ks], dim=1)


def recall_at_k(queries: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                gallery_labels: torch.Tensor, ks: Sequence[int]
                ) -> tuple[dict[int, float], torch.Tensor, list[str]]:
    """Recall@k of nearest-neighbour retrieval by cosine similarity (TCLR_SPEC section 7).

    A query is a hit at k if any of its k nearest gallery items has the query's class.

    Args:
        queries: [Q, D] query features; query_labels: [Q].
        gallery: [G, D] gallery features; gallery_labels: [G].
        ks: k values; each k > G is capped at G (noted in the returned notes).
    Returns:
        ({k: recall in percent}, neighbours [Q, min(max k, G)] gallery indices, notes).
    """
    if queries.shape[0] == 0 or gallery.shape[0] == 0:
        raise ValueError(f"retrieval needs at least one query and one gallery item, got "
                         f"{queries.shape[0]} queries and {gallery.shape[0]} gallery items")
    g = gallery.shape[0]
    notes = [f"k={k} is larger than the gallery ({g} videos): computed as k={g}"
             for k in ks if k > g]
    nn_idx = nearest_neighbours(queries, gallery, max(ks))                # [Q, K]
    hits = retrieval_hits(nn_idx, query_labels, gallery_labels, ks)       # [Q, len(ks)]
    recalls = {k: 100.0 * int(hits[:, i].sum()) / queries.shape[0] for i, k in enumerate(ks)}
    return recalls, nn_idx, notes


def chance_recall_at_k(query_labels: torch.Tensor, gallery_labels: torch.Tensor,
                       ks: Sequence[int]) -> dict[int, float]:
    """Expected Recall@k (percent) of a random ranking of the gallery: the floor to compare with.

    A query of class c, whose class has n_c of the G gallery videos, misses at k with probability
    C(G - n_c, k) / C(G, k) (k drawn without replacement).
    """
    g = int(gallery_labels.numel())
    counts = torch.bincount(gallery_labels, minlength=int(max(query_labels.max(),
                                                              gallery_labels.max())) + 1)
    out = {}
    for k in ks:
        kk = min(k, g)                                   # k beyond the gallery: the whole gallery
        miss = [math.comb(g - int(counts[c]), kk) / math.comb(g, kk)
                for c in query_labels.tolist()]
        out[k] = 100.0 * (1.0 - float(np.mean(miss)))
    return out


def per_class_recall(hits: torch.Tensor, query_labels: torch.Tensor, num_classes: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Recall@k of each class's queries.

    Args:
        hits: bool [Q, len(ks)] (:func:`retrieval_hits`); query_labels: [Q].
        num_classes: classes (a class without queries gets NaN).
    Returns:
        (recall [num_classes, len(ks)] in percent, queries per class [num_classes]).
    """
    labels = query_labels.long()
    support = torch.bincount(labels, minlength=num_classes).numpy()
    sums = torch.zeros(num_classes, hits.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, hits.double())
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support[:, None] > 0,
                          100.0 * sums.numpy() / np.maximum(support[:, None], 1), np.nan)
    return recall, support


def write_per_class_recall_csv(path: str | os.PathLike, class_names: Sequence[str],
                               ks: Sequence[int], recall: np.ndarray, support: np.ndarray) -> Path:
    """CSV with columns class_index, class_name, num_queries, recall@k... (percent, empty when the
    class has no query)."""
    path = Path(path)
    lines = ["class_index,class_name,num_queries," + ",".join(f"recall@{k}" for k in ks)]
    for i, name in enumerate(class_names):
        values = ["" if math.isnan(v) else f"{v:.2f}" for v in recall[i]]
        lines.append(f"{i},{_csv_field(name)},{int(support[i])}," + ",".join(values))
    return write_text(path, "\n".join(lines) + "\n", "table")


# --------------------------------------------------------------------------------------------
# Aggregation over runs
# --------------------------------------------------------------------------------------------

METRIC_KEYS = ("top1", "top5", "recall@1", "recall@5", "recall@10", "recall@20", "recall@50")
# Fields that describe the protocol: runs aggregated together should agree on them.
PROTOCOL_FIELDS = ("job", "dataset", "split", "backbone", "width", "checkpoint", "init", "select",
                   "label_fraction", "protocol", "num_videos", "num_queries", "num_gallery",
                   "bn_mode", "color", "resolution")


class ResultsFileError(ValueError):
    """A results.json that cannot be read as a job's results (the message names the file)."""


class MixedResultsError(ValueError):
    """Results about to be averaged together differ in more than the seed (the message says in
    what, and where)."""


# What results averaged together must share (the seed may differ): PROTOCOL_FIELDS less the
# counts of evaluated videos (a video that failed to decode in one run is a note, not a refusal).
SAME_BESIDES_SEED = tuple(f for f in PROTOCOL_FIELDS
                          if f not in ("num_videos", "num_queries", "num_gallery"))


def differences_besides_seed(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What differs between results that would be averaged as seeds of one measurement: the
    fields of SAME_BESIDES_SEED (the protocol sentence with its seed blanked) and, where every
    run records it, the provenance (checkpoint sha256, protocol config, split files; a checkpoint
    path may then differ, its content not). Empty when only the seed differs.

    Returns:
        One text per differing field: "<field>: <value> (<run folder>) vs <value> (<run folder>)".
    """
    import re

    from engine.rundir import provenance_differences
    if len(runs) < 2:
        return []
    with_provenance = all(isinstance(r.get("provenance"), dict) for r in runs)
    out = []

    def norm(field: str, value: Any) -> str:
        text = json.dumps(value, sort_keys=True)
        return re.sub(r"seed \d+", "seed *", text) if field == "protocol" else text

    for field in SAME_BESIDES_SEED:
        if field == "checkpoint" and with_provenance:
            continue
        seen: dict[str, Mapping] = {}
        for r in runs:
            seen.setdefault(norm(field, r.get(field)), r)
        if len(seen) > 1:
            shown = [f"{r.get(field)!r} ({r.get('run_dir', '?')})" for r in seen.values()]
            out.append(f"{field}: {' vs '.join(shown[:3])}")
    if with_provenance:
        first = runs[0]
        for r in runs[1:]:
            for text in provenance_differences(first["provenance"], r["provenance"]):
                out.append(f"{text} ({first.get('run_dir', '?')} vs {r.get('run_dir', '?')})")
    return list(dict.fromkeys(out))


def load_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read several results.json files (a folder means <folder>/results.json)."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "results.json"
        if not p.is_file():
            raise FileNotFoundError(f"no results file at {p}")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsFileError(f"{p} is not valid JSON ({exc}); rerun the job that wrote it, "
                                   "or delete it") from None
        except OSError as exc:
            raise ResultsFileError(f"cannot read {p}: {exc.strerror or exc}; fix its permissions "
                                   "or leave its folder out") from None
        if not isinstance(data, dict):
            raise ResultsFileError(f"{p} holds a JSON {type(data).__name__}, not the object a "
                                   "job writes; rerun the job that wrote it, or delete it")
        data.setdefault("run_dir", str(p.parent))
        out.append(data)
    return out


def aggregate_results(results: Sequence[Mapping[str, Any] | str | os.PathLike],
                      keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean and standard deviation of metrics over several runs (e.g. seeds).

    Args:
        results: results.json dicts, or paths to them (or to their run folders).
        keys: metric names to aggregate; default: those of METRIC_KEYS present in every run.
    Returns:
        {"n": runs, "seeds": [...], "metrics": {key: {"mean", "std", "values"}},
         "varying": {field: [values]} for PROTOCOL_FIELDS that differ between runs (a hint
         that runs of different protocols were mixed, or several checkpoints were)}.
        std is the sample standard deviation (ddof=1), 0.0 for a single run.
    """
    if not results:
        raise ValueError("aggregate_results needs at least one result")
    runs = [r if isinstance(r, Mapping) else load_results([r])[0] for r in results]
    if keys is None:
        keys = [k for k in METRIC_KEYS if all(isinstance(r.get(k), (int, float)) for r in runs)]
    metrics = {}
    for key in keys:
        missing = [i for i, r in enumerate(runs) if not isinstance(r.get(key), (int, float))]
        if missing:
            raise KeyError(f"metric {key!r} is missing from run(s) {missing}")
        values = [float(r[key]) for r in runs]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        metrics[key] = {"mean": float(np.mean(values)), "std": std, "values": values}
    varying = {}
    for field in PROTOCOL_FIELDS:
        values = [json.dumps(r.get(field), sort_keys=True) for r in runs]
        if len(set(values)) > 1:
            varying[field] = [r.get(field) for r in runs]
    return {"n": len(runs), "seeds": [r.get("seed") for r in runs], "metrics": metrics,
            "varying": varying}


def format_mean_std(entry: Mapping[str, Any], digits: int = 1) -> str:
    """'82.4 ± 0.3' from one aggregate_results metric entry."""
    return f"{entry['mean']:.{digits}f} \u00b1 {entry['std']:.{digits}f}"
