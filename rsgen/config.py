"""Typed configuration: dataclasses filled from YAML files in ``configs/`` plus ``key.sub=value`` overrides.

Each subsystem declares its own dataclass (nested dataclasses allowed); :func:`load_config` checks every key
and coerces values to the declared types, so a typo in a YAML file is an error that names the key and file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rsgen.errors import ConfigError
from rsgen.paths import CONFIG_DIR

T = TypeVar("T")


def resolve_config_path(name_or_path: str | Path, subdir: str = "") -> Path:
    """A config given by path, or by name within ``configs/<subdir>`` (``tiny`` -> ``configs/tiny.yaml``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    for candidate in (CONFIG_DIR / subdir / f"{p}.yaml", CONFIG_DIR / f"{p}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(x.stem for x in (CONFIG_DIR / subdir).glob("*.yaml"))
    raise ConfigError(
        f"unknown config {str(name_or_path)!r}; known in configs/{subdir}: {', '.join(known) or 'none'}"
    )


def load_config(
    cls: type[T],
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    subdir: str = "",
) -> T:
    """Build ``cls`` from a YAML file (path or name in ``configs/``) or a dict, then apply overrides."""
    where = "<dict>"
    data: dict[str, Any] = {}
    if isinstance(source, Mapping):
        data = dict(source)
    elif source is not None:
        path = resolve_config_path(source, subdir)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.lr=1e-4)")
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return from_dict(cls, data, where)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "<dict>", prefix: str = "") -> T:
    """Fill dataclass ``cls`` from ``data``, checking unknown keys and coercing types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(prefix + k for k in sorted(unknown))}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(hints[name], value, where, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {prefix.rstrip('.') or cls.__name__}: {e}") from None


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: {key}: cannot be {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, where, key + ".")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: {key}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _coerce(a, v, where, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}")
        if len(args) == 2:  # dict[str, T]: each value typed (a section per key when T is a dataclass)
            return {k: _coerce(args[1], v, where, f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}") from None
        if tp is int:
            if number != int(number):
                raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
            return int(number)
        return number
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-ready data (paths as strings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (atomically)."""
    from rsgen.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
