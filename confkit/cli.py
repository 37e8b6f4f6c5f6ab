"""A program's jobs on the command line: one flag per config field, grouped help, presets, the
layering defaults < preset < config file < flags, and where each value came from.

The program describes itself once in a :class:`Jobs` (config classes, presets, help layout); the
functions here take it. Validation is the program's own: it runs after :func:`parse_command_line`.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confkit.fields import (ConfigError, apply_overrides, flatten_mapping, get_value, is_derived,
                            leaf_fields, nearest)
from confkit.files import load_config_file, saved_class_name


@dataclass(frozen=True)
class Jobs:
    """What a program's command lines are made of.

    Attributes:
        classes: job name -> its config dataclass.
        presets: preset name -> flat leaf key -> value (a job skips the keys it does not have).
        preset_help: preset name -> what it is for (listed at the end of --help).
        sections: help section -> its description, in the order --help prints them.
        section_of: (leaf name, job) -> its help section.
        shown: job -> the leaf names its --help lists (the others are accepted silently).
    """

    classes: Mapping[str, type]
    presets: Mapping[str, Mapping[str, Any]]
    preset_help: Mapping[str, str]
    sections: Mapping[str, str]
    section_of: Callable[[str, str], str]
    shown: Callable[[str], list[str]]


class ShowAllHelp(argparse.Action):
    """A flag that prints a fuller help (``full_parser()``'s) and exits, as ``--help`` does."""

    def __init__(self, option_strings, dest, full_parser: Callable[[], argparse.ArgumentParser],
                 **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.full_parser = full_parser

    def __call__(self, parser, namespace, values, option_string=None):
        self.full_parser().print_help()
        parser.exit()


def add_field_flags(parser: argparse.ArgumentParser, cls: type, *,
                    section_of: Callable[[str], str], section_help: Mapping[str, str],
                    shown: set[str] | None) -> None:
    """One ``--field-name`` flag per settable leaf field of ``cls`` (values stay strings; a flag
    not given leaves no attribute), grouped by help section.

    Args:
        section_of: leaf name -> its help section (a key of ``section_help``).
        section_help: help section -> its description, in the order the help prints them.
        shown: the leaf names the help lists (None = all); the others are accepted silently.
    """
    defaults = cls()
    flags = [(name, path, f, tp) for name, (path, f, tp) in leaf_fields(cls).items()
             if not is_derived(f) and name != "preset"]
    sections = {section_of(name) for name, *_ in flags if shown is None or name in shown}
    # argparse prints groups in creation order: create the non-empty sections first, in the
    # section_help order; a group of only unused flags is created after them and prints nothing
    groups = {name: parser.add_argument_group(name, text) for name, text in section_help.items()
              if name in sections}
    for name, path, f, tp in flags:
        choices = f.metadata.get("choices")
        help_text = f.metadata.get("help", "")
        if choices:
            help_text += f" {{{'|'.join(str(c) for c in choices)}}}"
        default = get_value(defaults, path)
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        visible = shown is None or name in shown
        section = section_of(name)
        if section not in groups:
            groups[section] = parser.add_argument_group()
        groups[section].add_argument(
            "--" + name.replace("_", "-"), dest=name,
            metavar="LIST" if tp is tuple else tp.__name__.upper(),
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {default!r})" if visible else argparse.SUPPRESS)


def parse_flags(parser: argparse.ArgumentParser, cls: type, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_known_args(argv)``, refusing what is left over: an unknown flag (with the
    nearest known ones), a derived field's flag, or a stray argument."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("--")]
        known = [o for o in parser._option_string_actions if o.startswith("--")]
        if flags:
            bad = flags[0].split("=")[0]
            leaf = leaf_fields(cls).get(bad[2:].replace("-", "_"))
            if leaf and is_derived(leaf[1]):
                raise ConfigError(f"option {bad} is derived ({leaf[1].metadata['help']}) and "
                                  "cannot be set")
            raise ConfigError(f"unknown option {bad}{nearest(bad, known)}")
        raise ConfigError(f"unexpected argument {unknown[0]!r} (options look like --key value)")
    return args


def _presets_epilog(jobs: Jobs, job: str) -> str:
    shown = set(jobs.shown(job))
    lines = ["presets (--preset NAME; a config file and flags override its values):"]
    for name in sorted(jobs.presets):
        values = ", ".join(f"{k}={v}" for k, v in jobs.presets[name].items() if k in shown)
        lines.append(f"  {name:18s} " + "\n  ".join(textwrap.wrap(
            jobs.preset_help.get(name, ""), 78, subsequent_indent=" " * 19)))
        lines.append("\n".join(textwrap.wrap(f"[{values}]", 78, initial_indent=" " * 21,
                                             subsequent_indent=" " * 22)))
    lines.append("\nvalues resolve as: defaults < preset < config file < flags; --print-config "
                 "shows each value\nand where it came from")
    return "\n".join(lines)


def build_parser(jobs: Jobs, job: str, description: str | None = None,
                 show_all: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with one flag per leaf field of the job's config (values stay strings).

    The help lists the flags by section and only those the job shows; the others are accepted
    silently (``show_all`` lists them too, as ``--help-all`` does). The presets are listed with
    what they are for and their values.
    """
    cls = jobs.classes[job]
    parser = argparse.ArgumentParser(
        description=description or cls.__doc__, epilog=_presets_epilog(jobs, job),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", help="YAML or JSON config file")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config, each value with its source, and exit")
    parser.add_argument("--help-all", action=ShowAllHelp,
                        full_parser=lambda: build_parser(jobs, job, description, show_all=True),
                        help="show every accepted flag, also those this job does not use")
    parser.add_argument("--preset", default=argparse.SUPPRESS,
                        help=f"named preset: {', '.join(sorted(jobs.presets))} (listed below)")
    add_field_flags(parser, cls, section_of=lambda name: jobs.section_of(name, job),
                    section_help=jobs.sections, shown=None if show_all else set(jobs.shown(job)))
    return parser


def apply_preset(jobs: Jobs, cfg: Any, name: str) -> None:
    """Set the values of preset ``name`` that ``cfg`` has, and ``cfg.preset`` to the name."""
    if name not in jobs.presets:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(jobs.presets))}")
    apply_overrides(cfg, jobs.presets[name], source=f"preset {name}", skip_unknown=True)
    cfg.preset = name


def _refuse_other_job(jobs: Jobs, path: str, job: str) -> None:
    """A run folder's config.yaml (save_config's header names its class) given to another job."""
    writers = {cls.__name__: name for name, cls in jobs.classes.items()}
    writer = writers.get(saved_class_name(path))
    if writer is not None and writer != job:
        raise ConfigError(f"--config {path} was written by a {writer} job (it is that run's "
                          f"config.yaml), but this is the {job} job, whose settings differ; pass "
                          f"a {job} config or the flags themselves")


def parse_command_line(jobs: Jobs, job: str, argv: list[str]) -> tuple[Any, argparse.Namespace]:
    """The job's config from ``argv``, not yet validated: defaults < preset < config file < flags.

    Returns:
        (cfg, args): the config dataclass and argparse namespace (for --print-config).
    Raises:
        ConfigError: for unknown flags/keys, wrong types, an unknown preset or another job's file.
    """
    parser = build_parser(jobs, job)
    args = parse_flags(parser, jobs.classes[job], argv)
    cfg = jobs.classes[job]()
    file_values = load_config_file(args.config) if args.config else {}
    if args.config:
        _refuse_other_job(jobs, args.config, job)
    preset = getattr(args, "preset", None) or file_values.get("preset") or ""
    if preset:
        apply_preset(jobs, cfg, preset)
    if file_values:
        apply_overrides(cfg, {k: v for k, v in file_values.items() if k != "preset"},
                        source=f"config file {args.config}")
    cli = {k: v for k, v in vars(args).items() if k not in ("config", "print_config", "preset")}
    apply_overrides(cfg, cli, source="command line", from_string=True)
    return cfg, args


def value_sources(jobs: Jobs, job: str, args: argparse.Namespace) -> dict[str, str]:
    """Where each leaf value of a parsed command line came from (for ``--print-config``).

    Args:
        jobs, job: the program's jobs and the one whose command line was parsed.
        args: the namespace :func:`parse_command_line` returned.
    Returns:
        leaf name -> "default", "preset NAME", "file PATH", "flag --name" or "derived" (the last
        source in the order defaults < preset < config file < command line).
    """
    cls = jobs.classes[job]
    leaves = leaf_fields(cls)
    sources = {name: "derived" if is_derived(f) else "default"
               for name, (_p, f, _t) in leaves.items()}
    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    preset = getattr(args, "preset", None) or file_values.get("preset") or ""
    if preset:
        for key in jobs.presets.get(preset, {}):
            if key in leaves and sources[key] != "derived":
                sources[key] = f"preset {preset}"
        sources["preset"] = ("flag --preset" if getattr(args, "preset", None)
                             else f"file {args.config}")
    for key in flatten_mapping(file_values, cls):
        norm = key.replace("-", "_")
        if norm in leaves and norm != "preset":
            sources[norm] = f"file {args.config}"
    for key in vars(args):
        if key in leaves and key != "preset":
            sources[key] = "flag --" + key.replace("_", "-")
    return sources
