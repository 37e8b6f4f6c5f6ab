#!/usr/bin/env python
"""Nearest videos in a folder of features made by extract_features.py, by cosine similarity.

    python scripts/search_features.py runs/features/my_videos --query 12 -k 10
    python scripts/search_features.py runs/features/my_videos --query my_videos/dog.mp4 -k 5
    python scripts/search_features.py runs/features/my_videos --query new_clip.mp4 \\
        --picture search.png

--query is a row of index.csv, a video of the folder, or any other video: its features are then
computed with the folder's recorded protocol and weights (meta.json: the checkpoint is found by
its recorded path or --checkpoint, and must have the recorded sha256). Prints the k nearest videos
with their similarity and draws them as filmstrips beside the query (the retrieval picture of
nn_retrieval.py) into --picture (default: <FEATURES_DIR>/search/<query>.png). Rows whose video
could not be decoded are never returned. Per-clip folders are searched by each video's mean clip
feature, L2-normalised.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a file (python scripts/search_features.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from engine.cli import run_main  # noqa: E402
from user_errors import UserError  # noqa: E402


class SearchError(UserError):
    """A features folder or query that cannot be searched (the message names it and the fix)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features_dir", help="folder written by extract_features.py")
    parser.add_argument("--query", required=True,
                        help="a row number of index.csv, or a video file (in the folder or not)")
    parser.add_argument("-k", type=int, default=10, help="neighbours to list (default: 10)")
    parser.add_argument("--picture", default="",
                        help="PNG of the query and its neighbours as filmstrips (default: "
                             "FEATURES_DIR/search/<query>.png; 'none' = no picture)")
    parser.add_argument("--picture-k", type=int, default=5,
                        help="neighbours drawn in the picture (default: 5)")
    parser.add_argument("--checkpoint", default="",
                        help="the folder's checkpoint, when it is no longer at its recorded path "
                             "(checked against the recorded sha256)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow unpickling a checkpoint with Python objects (release files)")
    parser.add_argument("--device", default="cpu", help="device for a query's features")
    args = parser.parse_args(argv)
    if args.k < 1 or args.picture_k < 0:
        raise SearchError(f"-k {args.k} / --picture-k {args.picture_k}: -k must be >= 1 and "
                          "--picture-k >= 0")
    return args


def load_folder(folder: Path) -> tuple[np.ndarray, list[dict], dict]:
    """(features [N, D] memory-mapped, index rows, meta) of a complete features folder."""
    from engine.extract import FEATURES_NAME, read_index, read_meta
    meta = read_meta(folder)
    if meta is None or not (folder / FEATURES_NAME).is_file():
        raise SearchError(f"{folder} holds no features (no meta.json or {FEATURES_NAME}); make "
                          f"them with: python extract_features.py --videos DIR --checkpoint PATH "
                          f"--out-dir {folder}")
    if not meta.get("complete"):
        raise SearchError(f"{folder}: the extraction that last wrote it did not finish; run its "
                          f"command again to complete it: {meta.get('runs', [{}])[-1].get('command')}")
    return np.load(folder / FEATURES_NAME, mmap_mode="r"), read_index(folder), meta


def video_vectors(features: np.ndarray) -> np.ndarray:
    """[N, D] float32 unit rows (per-clip [N, K, D]: the mean of each video's non-zero clips)."""
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim == 3:
        used = (np.abs(feats).sum(-1, keepdims=True) > 0)            # [N, K, 1]
        feats = (feats * used).sum(1) / np.maximum(used.sum(1), 1)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, 1e-12)


def load_weights(meta: dict, checkpoint: str, trust: bool, device: str):
    """The backbone that made the folder's features (its recorded checkpoint or random seed)."""
    import torch

    from engine.common import seed_everything
    from engine.rundir import file_sha256
    from models import build_backbone, load_backbone_weights
    weights = meta["weights"]
    if weights["init"] == "random":
        seed_everything(weights["seed"])
        return build_backbone(meta["backbone"], width=meta["width"]).to(device).eval()
    path = Path(checkpoint or weights["path"])
    if not path.is_file():
        raise SearchError(f"the folder's checkpoint {path} is not there; pass --checkpoint PATH "
                          f"(a file with sha256 {weights['sha256'][:12]}...)")
    if file_sha256(path) != weights["sha256"]:
        raise SearchError(f"{path} is not the checkpoint the folder's features were made with "
                          f"(sha256 {file_sha256(path)[:12]}... here, {weights['sha256'][:12]}... "
                          "recorded); pass --checkpoint with the right file")
    backbone = build_backbone(meta["backbone"], width=meta["width"])
    load_backbone_weights(backbone, path, trust_checkpoint=trust)
    return backbone.to(torch.device(device)).eval()


def query_vector(args: argparse.Namespace, vectors: np.ndarray, index: list[dict], meta: dict
                 ) -> tuple[np.ndarray, int | None, str]:
    """(unit query vector [D], its row or None, its path)."""
    query = args.query
    if query.isdigit():
        row = int(query)
        if row >= len(index):
            raise SearchError(f"--query {row}: the folder has rows 0..{len(index) - 1}")
        if index[row]["status"] != "ok":
            raise SearchError(f"--query {row} ({index[row]['path']}) has no features: "
                              f"{index[row]['reason']}")
        return vectors[row], row, index[row]["path"]
    path = Path(query).resolve()
    rows = {r["path"]: int(r["row"]) for r in index if r["status"] == "ok"}
    if str(path) in rows:
        return vectors[rows[str(path)]], rows[str(path)], str(path)
    if not path.is_file():
        raise SearchError(f"--query {query}: not a row number, nor a video file")
    from engine.features import FeatureProtocol, feature_of_video
    protocol = FeatureProtocol.from_dict(meta["protocol"])
    backbone = load_weights(meta, args.checkpoint, args.trust_checkpoint, args.device)
    feature = feature_of_video(backbone, str(path), protocol, args.device).numpy()
    return video_vectors(feature[None])[0], None, str(path)


def nearest(vectors: np.ndarray, index: list[dict], query: np.ndarray, k: int,
            exclude: int | None) -> list[tuple[int, float]]:
    """The k (row, cosine similarity) of the highest similarity, best first; failed rows and the
    query's own row left out."""
    sims = vectors @ query                                           # [N]
    usable = np.array([r["status"] == "ok" for r in index])
    if exclude is not None:
        usable[exclude] = False
    sims = np.where(usable, sims, -np.inf)
    k = min(k, int(usable.sum()))
    order = np.argsort(-sims, kind="stable")[:k]
    return [(int(i), float(sims[i])) for i in order]


def draw(picture: Path, query_path: str, hits: list[tuple[int, float]], index: list[dict],
         meta: dict) -> Path:
    from engine import visualize
    fig = visualize.retrieval_figure(
        [visualize.filmstrip(query_path)],
        [[visualize.filmstrip(index[row]["path"]) for row, _ in hits]], None,
        [Path(query_path).name], [[f"{sim:.3f} {Path(index[row]['path']).name}"
                                   for row, sim in hits]],
        title=f"nearest videos by cosine similarity ({meta['protocol']['kind']} features, "
              f"{describe_weights(meta)})", query_heading="query")
    picture.parent.mkdir(parents=True, exist_ok=True)
    return visualize.save_figure(fig, picture)


def describe_weights(meta: dict) -> str:
    weights = meta["weights"]
    if weights["init"] == "random":
        return f"random weights, seed {weights['seed']}"
    return f"{Path(weights['path']).name}, sha256 {weights['sha256'][:12]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(args.features_dir)
    features, index, meta = load_folder(folder)
    vectors = video_vectors(features)
    query, row, query_path = query_vector(args, vectors, index, meta)
    hits = nearest(vectors, index, query, args.k, row)
    where = f"row {row}" if row is not None else "not in the folder: computed now"
    print(f"query: {query_path} ({where}); {len(hits)} nearest of {len(index)} videos "
          f"({describe_weights(meta)})")
    print(f"{'rank':>4}  {'cosine':>7}  {'row':>5}  path")
    for rank, (hit, sim) in enumerate(hits, start=1):
        print(f"{rank:>4}  {sim:7.4f}  {hit:>5}  {index[hit]['path']}")
    if args.picture != "none" and args.picture_k > 0 and hits:
        picture = Path(args.picture or folder / "search" / f"{Path(query_path).stem}.png")
        print(f"picture: {draw(picture, query_path, hits[:args.picture_k], index, meta)}")
    return 0


if __name__ == "__main__":
    run_main(main)
