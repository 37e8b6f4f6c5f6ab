"""Synthetic video dataset whose classes are defined only by temporal structure.

It writes real encoded AVI files (OpenCV VideoWriter; XviD like UCF101, MJPG where XviD is missing) in
the on-disk layout of UCF101 (default) or HMDB51 with the official split-file formats (TCLR_SPEC
section 8), so every loader, training script and evaluation runs unchanged on it. It is the dataset of
the CPU-sized demo and of the tests.

Class design (TCLR_SPEC section 11). TCLR pretraining augments every clip with a random square crop
(60-100 % of the frame height, so absolute position and size are lost), a horizontal flip (left/right
and clockwise/anticlockwise swap), grayscale / colour jitter / channel drop (colour identity is lost)
and mirror padding at the end of short videos. A class that one of these erases would ask
self-supervision to destroy its own label, so every class here is a temporal pattern that is flip-,
crop- and colour-invariant, and its single frames are distributed like those of every other class:

- 1 to 3 "actors" per video perform the class's pattern, each with its own shape, colour, size,
  position and random phase (so any window of the video shows the pattern); 0 to 3 static
  distractors of the same shapes sit on a textured, noisy background.
- Size and opacity, which some classes vary over time, follow one marginal distribution for every
  sprite of every class, and no object ever vanishes, so object size, translucency and object count
  in one frame say nothing about the class.
- Periods and speeds are set for the clips TCLR samples: 16 frames at stride 4 (64-frame span) for
  pretraining, 16 at stride 2 (32 frames) for classification, at frame sizes down to 64x48 px. Fast
  and slow variants differ by at least 2.5x, more than a crop's rescaling (up to 1.67x) can change.
- Appearance (background colour/texture/noise) is shared within a UCF-style group (gXX), so the
  group-wise splits test on unseen backgrounds as UCF101's test on unseen actors and scenes.

Three designs (`--design`, `DESIGNS`): "varied" (the default, described above: the demo's and the
tests' data); "trajectory": every video has the same look, one light square on a flat grey
background, and six classes differ only in the square's path (static, horizontal / vertical /
diagonal swing, circle, bouncing drift), so that instance discrimination has no appearance shortcut
and the only way to tell two videos apart is motion; and "switch" (the learning demo's data): the
same look, but every video holds two of the swing-horizontal / swing-vertical / circle / drift
motions one after the other, in a random order, switching at a random moment in the middle half,
and the class is the pair (6 classes). There the clips of one video differ in kind, which is what
the temporal terms separate and the label needs (docs/demos.md has the
measurements that led to it).

Run `python -m dataloaders.synthetic --out DIR` (flags in `build_parser`); `separability_check`
measures that single frames carry no class information while short clips do (also
scripts/check_synthetic.py). A manifest (synthetic_manifest.json) records the arguments, every video's
label and split roles, and the top-level entries the generator owns.

Modules: `designs` (the class sets as per-frame tracks, `DESIGNS`, `SyntheticDatasetError`),
`render` (appearance, rendering and encoding one video), `layout` (groups, split roles, paths,
split files), `generator` (`generate`, the manifest and output folder, the command line) and
`check` (the separability check). The names below are the package's interface.
"""

from dataloaders.synthetic.check import SeparabilityReport, separability_check
from dataloaders.synthetic.designs import (CLASS_REGISTRY, DEFAULT_DESIGN, DESIGNS, MAX_CLASSES,
                                           SWITCH_CLASSES, TEMPORAL_CLASSES, TRAJECTORY_CLASSES,
                                           Actor, Design, Stage, SyntheticDatasetError,
                                           TemporalClass, Track, class_names, get_design,
                                           hmdb_class_name)
from dataloaders.synthetic.generator import (GENERATOR_VERSION, MANIFEST_NAME, GenerationSummary,
                                             build_parser, generate, main, read_manifest)
from dataloaders.synthetic.layout import (LAYOUTS, NUM_SPLITS, SPLIT_FOLDERS, VideoEntry, group_layout,
                                          hmdb_roles, plan_videos, ucf_roles, write_split_files)
from dataloaders.synthetic.render import VideoSpec, pick_fourcc, render_frames, write_video

__all__ = [
    "Actor", "CLASS_REGISTRY", "DEFAULT_DESIGN", "DESIGNS", "Design", "GENERATOR_VERSION",
    "GenerationSummary", "LAYOUTS", "MANIFEST_NAME", "MAX_CLASSES", "NUM_SPLITS", "SPLIT_FOLDERS",
    "SWITCH_CLASSES", "SeparabilityReport", "Stage", "SyntheticDatasetError", "TEMPORAL_CLASSES",
    "TRAJECTORY_CLASSES", "TemporalClass", "Track", "VideoEntry", "VideoSpec", "build_parser",
    "class_names", "generate", "get_design", "group_layout", "hmdb_class_name", "hmdb_roles",
    "main", "pick_fourcc", "plan_videos", "read_manifest", "render_frames", "separability_check",
    "ucf_roles", "write_split_files", "write_video",
]
