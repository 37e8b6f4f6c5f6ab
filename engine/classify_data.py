"""The data of a classification run: the train split's labelled and validation subsets (written
into the run folder), the test list, and their loaders (engine.classify builds them once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import ClassifyConfig
from dataloaders.subsets import split_train_videos, write_video_list
from engine.common import RunContext, ensure_dataset, make_loader
from engine.errors import TrainingError
from engine.evaluation import eval_loader
from engine.logging import steps_text


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


def build_data(cfg: ClassifyConfig, ctx: RunContext) -> ClassifyData:
    """Video lists, subsets (written to the run folder) and loaders."""
    from dataloaders import batching
    from dataloaders import datasets as ds
    from dataloaders.splits import build_video_list, check_split_lists, require_classes
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
    require_classes(train_all, test_videos, f"{d.dataset} split {d.split} under {d.data_root}")
    ds.check_eval_lengths(test_videos, d.clip_len, d.train_stride, f"{d.dataset} split {d.split} "
                                                                    "test")
    train_videos, val_videos = split_train_videos(train_all, cfg)
    train_set = ds.build_dataset(d, "train", train_videos, cfg.seed)
    if len(train_set) < cfg.batch_size:
        raise TrainingError(too_few_videos(cfg, len(train_all), len(train_videos),
                                           len(val_videos)))
    train_loader, train_sampler = make_loader(train_set, cfg, ctx.dist, train=True,
                                              collate_fn=batching.collate_clips)
    val_loader = None
    if val_videos:
        val_clips = cfg.val_clips or cfg.num_test_clips
        val_loader = eval_loader(cfg, ctx, val_videos, val_clips)
    test_loader = eval_loader(cfg, ctx, test_videos, cfg.num_test_clips)
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


def write_subsets(ctx: RunContext, data: ClassifyData) -> None:
    """labelled_videos.txt and val_videos.txt in the run folder (rank 0)."""
    if ctx.dist.is_main:
        root = ctx.cfg.data.data_root
        write_video_list(ctx.run_dir / "labelled_videos.txt", data.train_videos, root)
        write_video_list(ctx.run_dir / "val_videos.txt", data.val_videos, root)
