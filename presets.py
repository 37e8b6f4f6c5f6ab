"""Named presets: the paper's experiments and the CPU-sized demos, as flat config values.

A preset maps leaf config keys (``config``'s field names) to values; a job skips the keys it does
not have, so one preset serves pretraining and evaluation alike. ``--preset NAME`` applies one
(defaults < preset < config file < flags). This module imports nothing: ``config`` checks the
values against the schema when a preset is applied (tests/test_config.py applies every one).
"""

from __future__ import annotations

from typing import Any

# The pretraining monitor (engine.monitor) is on for the paper's runs: 4 train videos per class, 2
# clips each, every epoch; estimated at under 1% of a UCF101 epoch (docs/performance.md).
_MONITOR = {"monitor_every": 1, "monitor_videos": 4, "monitor_clips": 2}
_PAPER_UCF = {"dataset": "ucf101", "split": 1, "width": 64, "resolution": 112, **_MONITOR}
PRESETS: dict[str, dict[str, Any]] = {
    "ucf101_r3d18": {**_PAPER_UCF, "backbone": "r3d18"},
    "ucf101_r2plus1d18": {**_PAPER_UCF, "backbone": "r2plus1d18"},
    "ucf101_c3d": {**_PAPER_UCF, "backbone": "c3d"},
    "k400_r3d18": {**_PAPER_UCF, "dataset": "kinetics400", "backbone": "r3d18"},
    "k400_r2plus1d18": {**_PAPER_UCF, "dataset": "kinetics400", "backbone": "r2plus1d18"},
    # CPU-sized: a narrow R3D-18 on small synthetic videos (TCLR_SPEC section 11's sizing hint).
    "demo": {
        "dataset": "synthetic", "data_root": "data/synthetic_demo", "backbone": "r3d18",
        "width": 16, "resolution": 32, "num_workers": 2, "amp": "off", "batch_size": 10,
        "channels_last": True, "warmup_factors": (0.1, 0.5, 1.0),
        "synthetic_classes": 6, "synthetic_videos_per_class": 30, "synthetic_frames": 96,
        "synthetic_width": 64, "synthetic_height": 48, **_MONITOR,
    },
    # The learning demo (scripts/learning_demo.sh; scripts/demo.sh runs one seed of it): a width-8
    # R3D-18 at 24 px (about 1.2 s per step of 20 videos on one idle core) on the "switch" design,
    # enough videos for 324 test queries (docs/demos.md).
    "learning": {
        "dataset": "synthetic", "data_root": "data/synthetic_switch", "backbone": "r3d18",
        "width": 8, "resolution": 24, "num_workers": 2, "amp": "off", "batch_size": 20,
        "channels_last": True, "warmup_factors": (0.1, 0.5, 1.0),
        "synthetic_design": "switch", "synthetic_classes": 6, "synthetic_videos_per_class": 180,
        "synthetic_frames": 96, "synthetic_width": 64, "synthetic_height": 48,
        "monitor_every": 1, "monitor_videos": 20, "monitor_clips": 2,
    },
}
# The linear probe of the CPU demos (mini_ablation.sh; demo.sh and learning_demo.sh pass the same
# flags): the last epoch, no held-out videos, 3 test clips, and BatchNorm statistics that keep updating (the release's protocol; frozen
# statistics would judge a random backbone with its uncalibrated initial ones).
DEMO_LINEAR_PROBE = {"bn_mode": "train", "select": "last", "val_fraction": 0.0, "num_test_clips": 3}
PRESETS["demo_linear"] = {**PRESETS["demo"], **DEMO_LINEAR_PROBE}


# --help: what a preset is for (PRESETS holds its values).
PRESET_HELP: dict[str, str] = {
    "ucf101_r3d18": "the paper's UCF101 setting (split 1, 112 px, full width) with R3D-18",
    "ucf101_r2plus1d18": "the paper's UCF101 setting with R(2+1)D-18",
    "ucf101_c3d": "the paper's UCF101 setting with C3D",
    "k400_r3d18": "Kinetics-400 pretraining with R3D-18 (112 px, full width)",
    "k400_r2plus1d18": "Kinetics-400 pretraining with R(2+1)D-18",
    "demo": "CPU-sized: a narrow R3D-18 (width 16, 32 px) on small generated synthetic videos "
            "(6 classes x 30 videos, the 'varied' design; scripts/mini_ablation.sh, "
            "scripts/retrieval_curve.sh)",
    "demo_linear": "demo with the CPU demos' linear probe: the last epoch, no held-out videos, 3 "
                   "test clips, BatchNorm statistics updating (scripts/mini_ablation.sh)",
    "learning": "the learning demo: a width-8 R3D-18 at 24 px on the generated 'switch' design, "
                "6 classes x 180 videos, 324 test queries (scripts/demo.sh: one seed; "
                "scripts/learning_demo.sh: three)",
}
