"""Config files and text: YAML/JSON in, ``config.yaml`` out, plain dicts, the resolved dump."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from atomic_io import write_text
from confkit.fields import (ConfigError, apply_overrides, flatten_mapping, get_value, is_derived,
                            leaf_fields)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file into a mapping."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--config {p} is a directory, not a config file (a run folder's is "
                          f"{p / 'config.yaml'})")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}; fix its "
                          "permissions or pass another --config") from None
    try:
        data = (json.loads(text, object_pairs_hook=_json_mapping(p)) if p.suffix == ".json"
                else yaml.load(text, Loader=_loader(p)))
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                          f"{exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping of keys to values at the top level")
    return data


def _loader(path: Path) -> type:
    """A yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last
    silently, so one of the two settings would be ignored without a word)."""
    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"config file {path}:{line}: key {key!r} is set twice (first "
                                      f"on line {seen[key]}); keep one of them")
                seen[key] = line
            return super().construct_mapping(node, deep=deep)
    return UniqueKeyLoader


def _json_mapping(path: Path):
    """json object_pairs_hook refusing a key written twice in one object."""
    def build(pairs):
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(f"config file {path}: key {key!r} is set twice; keep one of them")
            out[key] = value
        return out
    return build


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-Python dict of a config (tuples become lists)."""
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(dataclasses.asdict(cfg))


def from_dict(cls: type, values: Mapping[str, Any]):
    """Rebuild a ``cls`` config from :func:`to_dict` output, leaving out its derived fields (the
    caller's finalize recomputes them)."""
    cfg = cls()
    leaves = leaf_fields(cls)
    settable = {k: v for k, v in flatten_mapping(values, cls).items()
                if not (k in leaves and is_derived(leaves[k][1]))}
    apply_overrides(cfg, settable, source="saved config")
    return cfg


def save_config(cfg: Any, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config as ``config.yaml`` into ``run_dir`` (re-usable via --config).

    Its first line names the config class (read back by :func:`saved_class_name`)."""
    path = Path(run_dir) / "config.yaml"
    values = to_dict(cfg)
    header = (f"# Resolved {type(cfg).__name__}. Re-run with: --config {path.name}\n"
              "# Derived fields (recomputed on load, not settable): "
              + ", ".join(n for n, (_p, f, _t) in leaf_fields(type(cfg)).items()
                          if is_derived(f)) + "\n")
    return write_text(path, header + yaml.safe_dump(_strip_derived(cfg, values), sort_keys=False),
                      "config")


def _strip_derived(cfg: Any, values: dict[str, Any]) -> dict[str, Any]:
    leaves = leaf_fields(type(cfg))
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if not is_derived(leaves[k][1])}
        elif not is_derived(leaves[key][1]):
            out[key] = value
    return out


def saved_class_name(path: str | os.PathLike) -> str | None:
    """The config class a file written by :func:`save_config` names in its header, else None."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    match = re.match(r"# Resolved (\w+)\.", first)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# Describing a resolved config
# --------------------------------------------------------------------------------------------

def describe(cfg: Any, sources: dict[str, str] | None = None) -> str:
    """Human-readable multi-line dump of the resolved config (for banners).

    Args:
        cfg: a config.
        sources: leaf name -> where its value came from (:func:`value_sources`), printed beside
            each value when given.
    """
    lines = []
    for name, (path, _f, _tp) in leaf_fields(type(cfg)).items():
        value = f"{get_value(cfg, path)!r}"
        if sources is not None:
            value = f"{value:32s} # {sources.get(name, 'default')}"
        lines.append(f"  {name:28s} {value}")
    return "\n".join(lines)
