"""Frozen dataclasses built from TOML tables, checked key by key.

Every error is one line naming where it is and what was wanted, e.g.
``config.toml: [llm] n_ctx must be an integer >= 256, got 'big'``. ``config.toml`` and
persona files are both read this way.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from engine.errors import ConfigError


def bounded(default: Any, *, min: float | None = None, max: float | None = None) -> Any:
    """A numeric field with bounds checked at load time."""
    return field(default=default, metadata={"min": min, "max": max})


def build_dataclass(cls: Any, data: Any, *, where: str, base_dir: Path) -> Any:
    """Build the frozen dataclass ``cls`` from a TOML table, checking keys, types and bounds.

    ``where`` prefixes every error (``"config.toml: [llm]"``). Used for persona files too.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where} unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value, where=f"{where} [{key}]", base_dir=base_dir)
        else:
            kwargs[key] = _coerce(tp, value, f"{where} {key}", base_dir, fields[key].metadata)
    return cls(**kwargs)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}s"
    if tp is Path:
        return "a path (string)"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _coerce(tp: Any, value: Any, where: str, base_dir: Path, meta: Mapping[str, Any]) -> Any:
    def fail(extra: str = "") -> typing.NoReturn:
        raise ConfigError(f"{where} must be {_describe(tp)}{extra}, got {value!r}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where=where, base_dir=base_dir)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value == "" and type(None) in typing.get_args(tp):
            return None
        return _coerce(args[0], value, where, base_dir, meta)
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin is tuple:
        if not isinstance(value, list):
            fail()
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]", base_dir, {}) for i, v in enumerate(value))
    if tp is Path:
        if not isinstance(value, str) or not value:
            fail()
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base_dir / p)
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(_bounds(meta))
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(_bounds(meta))
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            fail()
        return value
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        fail(_bounds(meta))
    return value


def _bounds(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f" between {lo:g} and {hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""
