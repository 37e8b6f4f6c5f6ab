"""Config fields: ``option()``, the flat view of a config tree, type checks, overrides, checks.

A config is a dataclass whose fields are made with :func:`option` (default, help text, allowed
values, derived or not); a field whose type is itself a dataclass is a section (``data``). Every
leaf field has a name unique in its tree: its flag (``--data-root``) and its key in a file (flat
``data_root: ...`` or nested under its section).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from collections.abc import Mapping
from typing import Any

from user_errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem the user can fix: bad key, type or value."""


def option(default: Any, help: str, *, choices: tuple | None = None, derived: bool = False):
    """A dataclass field with its help text (and optionally allowed values / derived flag)."""
    meta = {"help": help, "choices": choices, "derived": derived}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


# --------------------------------------------------------------------------------------------
# Flattening: leaf name -> (path of attribute names, dataclasses.Field, type)
# --------------------------------------------------------------------------------------------

def leaf_fields(cls: type) -> dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Map every leaf field name of a config class to (attribute path, Field, type)."""
    out: dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for name, (path, sub, sub_tp) in leaf_fields(tp).items():
                out[name] = ((f.name,) + path, sub, sub_tp)
        else:
            if f.name in out:
                raise RuntimeError(f"duplicate config field name {f.name!r} in {cls.__name__}")
            out[f.name] = ((f.name,), f, tp)
    return out


def is_derived(f: dataclasses.Field) -> bool:
    """A field finalize computes (not settable from a flag or file)."""
    return bool(f.metadata.get("derived"))


def section_names(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` that are nested config dataclasses (``data``)."""
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name]))


def flatten_mapping(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """A flat key -> value mapping of a file's values, with ``cls``'s sections opened.

    Raises:
        ConfigError: a key of ``cls`` placed in a section it does not belong to (``data: {lr:
            0.1}``); unknown keys are left to the caller's unknown-key check.
    """
    sections = section_names(cls)
    hints = typing.get_type_hints(cls)
    leaves = leaf_fields(cls)
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in sections and isinstance(value, dict):
            own = leaf_fields(hints[key])
            for inner in value:
                norm = str(inner).replace("-", "_")
                if norm in leaves and norm not in own:
                    home = leaves[norm][0][:-1]
                    where = f"under '{home[0]}:'" if home else "at the top level"
                    raise ConfigError(f"config key {inner!r} is under '{key}:' but belongs "
                                      f"{where}; move it there")
            flat.update(flatten_mapping(value, hints[key]))
        else:
            flat[key] = value
    return flat


def get_value(cfg: Any, path: tuple[str, ...]) -> Any:
    obj = cfg
    for name in path:
        obj = getattr(obj, name)
    return obj


def set_value(cfg: Any, path: tuple[str, ...], value: Any) -> None:
    obj = cfg
    for name in path[:-1]:
        obj = getattr(obj, name)
    setattr(obj, path[-1], value)


def nearest(key: str, valid) -> str:
    """`` (did you mean: a, b?)`` for the valid names close to ``key``, else ''."""
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


# --------------------------------------------------------------------------------------------
# Values: type checks and overrides
# --------------------------------------------------------------------------------------------

def coerce(key: str, value: Any, tp: Any, from_string: bool) -> Any:
    """Check/convert ``value`` to the field type ``tp``; raise ConfigError naming ``key``."""
    def bad(expected: str):
        return ConfigError(f"config key {key!r}: expected {expected}, got {value!r}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise bad("a boolean (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad("an integer") from None
        raise bad("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # also from a file: YAML 1.1 (PyYAML) reads 1e-3, without a dot, as the string "1e-3"
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        raise bad("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if tp is tuple:
        if from_string and isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
            value = parts
        if isinstance(value, (list, tuple)):
            items = []
            for item in value:
                if isinstance(item, str):
                    try:
                        item = float(item) if any(c in item for c in ".eE") else int(item)
                    except ValueError:
                        raise bad("a comma-separated list of numbers") from None
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise bad("a list of numbers")
                items.append(item)
            return tuple(items)
        raise bad("a list of numbers")
    raise RuntimeError(f"unsupported config type {tp!r} for {key!r}")


def apply_overrides(cfg: Any, values: Mapping[str, Any], *, source: str, from_string: bool = False,
                    skip_unknown: bool = False) -> None:
    """Set leaf fields of ``cfg`` from a flat or nested mapping, checking keys and types."""
    leaves = leaf_fields(type(cfg))
    for key, value in flatten_mapping(values, type(cfg)).items():
        norm = key.replace("-", "_")
        if norm not in leaves:
            if skip_unknown:
                continue
            raise ConfigError(f"{source}: unknown config key {key!r}{nearest(norm, leaves)}")
        path, f, tp = leaves[norm]
        if is_derived(f):
            if skip_unknown:
                continue
            raise ConfigError(f"{source}: {key!r} is derived ({f.metadata['help']}); "
                              "set the fields it comes from instead")
        set_value(cfg, path, coerce(norm, value, tp, from_string))


# --------------------------------------------------------------------------------------------
# Checks every config gets (finalize adds the schema's own rules)
# --------------------------------------------------------------------------------------------

def check_choices(cfg: Any) -> None:
    """Every field with allowed values holds one of them."""
    for name, (path, f, _tp) in leaf_fields(type(cfg)).items():
        choices = f.metadata.get("choices")
        if choices and get_value(cfg, path) not in choices:
            raise ConfigError(f"config key {name!r}: {get_value(cfg, path)!r} is not one of "
                              f"{', '.join(map(str, choices))}")


def require_finite(cfg: Any) -> None:
    """Every float setting (and every number of a list setting) is finite: inf or nan in, say,
    lr would train to non-finite weights."""
    for name, (path, _f, tp) in leaf_fields(type(cfg)).items():
        value = get_value(cfg, path)
        values = value if tp is tuple else (value,) if tp is float else ()
        for v in values:
            require(math.isfinite(v), f"config key {name!r}: must be a finite number, got {v}")


def expand_user_paths(cfg: Any, keys: tuple[str, ...]) -> None:
    """Expand a leading ``~`` of the path settings ``keys`` as the shell would (a config file's
    values never see a shell)."""
    leaves = leaf_fields(type(cfg))
    for key in keys:
        if key in leaves:
            value = get_value(cfg, leaves[key][0])
            if value.startswith("~"):
                set_value(cfg, leaves[key][0], os.path.expanduser(value))
