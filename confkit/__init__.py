"""Dataclass configs on the command line and in YAML/JSON files: the machinery under ``config``.

It knows nothing of TCLR: ``config`` holds the schema (fields, jobs, --help layout, validation) and
``presets`` the named presets; this package turns dataclasses of :func:`option` fields into strict
command lines and files. Unknown keys, wrong types and impossible values raise
:class:`ConfigError` naming the key and the nearest valid ones.

    fields  option(), the flat view of a config tree (leaf_fields), type checks, overrides, checks
    files   config files in (YAML/JSON) and out (config.yaml), plain dicts, describe()
    cli     argparse flags by help section, presets, defaults < preset < file < flags, sources
"""

from confkit.cli import Jobs, apply_preset, build_parser, parse_command_line, value_sources
from confkit.fields import (ConfigError, apply_overrides, check_choices, expand_user_paths,
                            get_value, is_derived, leaf_fields, option, require, require_finite,
                            set_value)
from confkit.files import describe, from_dict, load_config_file, save_config, to_dict

__all__ = [
    "ConfigError", "Jobs", "apply_overrides", "apply_preset", "build_parser", "check_choices",
    "describe", "expand_user_paths", "from_dict", "get_value", "is_derived", "leaf_fields",
    "load_config_file", "option", "parse_command_line", "require", "require_finite",
    "save_config", "set_value", "to_dict", "value_sources",
]
