"""What a classification run reports: results.json, the protocol sentence, the per-class and
confusion-matrix files and the summary line (engine.classify calls these once its test
evaluation is done)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atomic_io import write_json
from config import ClassifyConfig
from engine import metrics
from engine.common import RunContext
from engine.evaluation import EvalResult
from engine.rundir import provenance

if TYPE_CHECKING:
    from engine.classify import Protocol

SELECT_LABELS = {
    "val": "val (best accuracy on held-out train videos)",
    "last": "last (last epoch)",
    "best_test": "best_test (optimistic: selected on the test split)",
}


def protocol_text(cfg: ClassifyConfig, protocol: Protocol) -> str:
    """One sentence stating the protocol, written into results.json."""
    d = cfg.data
    val = ""
    if cfg.select == "val":
        val_clips = cfg.val_clips or cfg.num_test_clips
        val = (f"; validation: {cfg.val_fraction:g} of each class of the train split held out "
               f"(seed {cfg.seed}), {val_clips} clips/video")
    rule = (f"/10 each time {cfg.plateau_patience} epochs (counted since the last drop, not "
            f"reset by an improvement: the release's rule) had a training loss above the best, "
            f"stop after the first epoch trained below {cfg.min_lr:g}" if cfg.lr_rule == "release"
            else f"/10 after {cfg.plateau_patience} consecutive epochs without training-loss "
            f"improvement, stop before an lr below {cfg.min_lr:g}")
    return (f"{protocol.summary}; Adam lr {cfg.lr:g}, {rule}, at most {cfg.epochs} epochs; "
            f"train clips {d.clip_len} frames stride {d.train_stride}, weak augmentation; test: "
            f"{cfg.num_test_clips} clips/video, centre crop {d.eval_crop:g} -> {d.resolution}px, softmax "
            f"averaged per video; model selection: {SELECT_LABELS[cfg.select]}{val}")


def build_results(cfg: ClassifyConfig, protocol: Protocol, data: Any, init: dict, outcome: Any,
                  test: EvalResult, elapsed: float) -> dict:
    """The results.json document.

    Args:
        data: the run's ``engine.classify.ClassifyData`` (its video lists and class names).
        init: the backbone's init info (``models.weights.init_backbone``).
        outcome: the epoch loop's ``engine.classify.FitOutcome`` (epochs run, selection).
        test: the test evaluation of the selected model.
        elapsed: seconds since the run started.
    """
    acc = test.accuracy()
    notes = []
    num_classes = len(data.class_names)
    if num_classes < 5:
        notes.append(f"top5 is computed as top{num_classes}: only {num_classes} classes")
    if cfg.label_fraction < 1.0 and cfg.select == "val":
        notes.append(f"model selection used {len(data.val_videos)} labelled validation videos on "
                     f"top of the {cfg.label_fraction:g} label fraction; --select last keeps to "
                     "the fraction strictly")
    if test.num_videos != len(data.test_videos):
        notes.append(f"{len(data.test_videos) - test.num_videos} test videos could not be "
                     "evaluated (see failed_videos); accuracies are over the evaluated ones")
    d = cfg.data
    return {
        # percentages to 0.01 points; the exact counts of correct videos beside them
        "job": protocol.job, "top1": metrics.round_percent(acc[1]),
        "top5": metrics.round_percent(acc[5]),
        **{f"top{k}_correct": c
           for k, c in metrics.topk_correct(test.probs, test.labels, (1, 5)).items()},
        "num_videos": test.num_videos, "num_videos_listed": len(data.test_videos),
        "failed_videos": [list(f) for f in test.failures],
        "protocol": protocol_text(cfg, protocol),
        "checkpoint": init["checkpoint"], "init": init["init"], "init_source": init["init_source"],
        "dataset": d.dataset, "data_root": d.data_root, "split": d.split, "seed": cfg.seed,
        "select": SELECT_LABELS[cfg.select], "selected_epoch": outcome.selection.epoch,
        "val_top1": metrics.round_percent(outcome.selection.val_top1),
        "selected_checkpoint": ("checkpoints/best.pth" if outcome.selection.epoch is not None
                                else None),
        "label_fraction": cfg.label_fraction,
        "val_fraction": cfg.val_fraction if cfg.select == "val" else 0.0,
        "num_train_videos": len(data.train_videos), "num_val_videos": len(data.val_videos),
        "num_classes": num_classes, "num_test_clips": cfg.num_test_clips,
        "epochs_run": outcome.epochs_run, "stopped_because": outcome.stopped_because,
        "backbone": cfg.backbone, "width": cfg.width, "color": d.color, "resolution": d.resolution,
        "lr": cfg.lr, "notes": notes, "elapsed_s": round(elapsed, 1),
        **protocol.result_fields,
        # what made this result: checkpoint sha256 / "random", seed, protocol config, split files
        "provenance": provenance(cfg),
    }


def summary_line(results: dict) -> str:
    """The run's last log line: job, data, init, selection, accuracy."""
    return (f"{results['job']} | {results['dataset']} split {results['split']} | init "
            f"{results['init']}{' ' + results['checkpoint'] if results['checkpoint'] else ''} | "
            f"labels {results['label_fraction']:g} | select {results['select'].split(' ')[0]}"
            f" | top1 {results['top1']:.2f}% top5 {results['top5']:.2f}% over "
            f"{results['num_videos']} videos x {results['num_test_clips']} clips | seed "
            f"{results['seed']}")


def write_outputs(ctx: RunContext, results: dict, test: EvalResult, class_names: list) -> None:
    """results.json, per-class accuracy CSV, confusion matrix CSV + PNG (also in TensorBoard)."""
    from engine import visualize
    run_dir = ctx.run_dir
    ctx.logger.info(f"evaluated {test.num_videos} / {results['num_videos_listed']} test videos")
    if test.failures:
        ctx.logger.warning("test videos that failed to decode:\n  "
                           + "\n  ".join(f"{p}: {r}" for p, r in test.failures))
    preds = test.probs.argmax(1).numpy()
    labels = test.labels.numpy()
    per_class, support = metrics.per_class_accuracy(preds, labels, len(class_names))
    cm = metrics.confusion(preds, labels, len(class_names))
    metrics.write_per_class_csv(run_dir / "per_class_accuracy.csv", class_names, per_class, support)
    metrics.write_confusion_csv(run_dir / "confusion_matrix.csv", class_names, cm)
    init = f"checkpoint {results['checkpoint']}" if results["checkpoint"] else "random init"
    title = (f"{results['job']}, {init}\n{results['dataset']} split {results['split']} test, "
             f"top-1 {results['top1']:.2f}%")
    visualize.save_figure(visualize.confusion_figure(cm, class_names, title),
                          run_dir / "confusion_matrix.png", ctx.tb.writer, "test/confusion_matrix")
    if ctx.tb.writer is not None:
        ctx.tb.scalars({"top1": results["top1"], "top5": results["top5"]}, 0, "test/")
    visualize.write_training_curves(run_dir, ctx.tb.writer)      # loss and lr per epoch
    write_json(run_dir / "results.json", results)
    ctx.jsonl.write({"final": True, **{k: results[k] for k in ("top1", "top5", "num_videos")}})
    for note in results["notes"]:
        ctx.logger.info(f"note: {note}")
    ctx.logger.info(summary_line(results))
