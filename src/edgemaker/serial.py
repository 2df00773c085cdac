"""Dataclasses to JSON-ready dicts and back, by walking their fields: a field added to an option
group is saved and restored with no extra code."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path


def to_dict(obj) -> dict:
    """A dataclass as JSON-ready values: nested groups as dicts, paths as strings, tuples as lists."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(obj)


def from_dict(cls, d: dict):
    """The dataclass `cls` from `to_dict`'s output; missing fields take their defaults, unknown ones are errors."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} in {cls.__name__}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _value(hints[k], v) for k, v in d.items()})


def _value(tp, v):
    if v is None:
        return None
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in args:  # the first member the value fits
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(v, dict):
                return from_dict(arg, v)
            if arg is Path and isinstance(v, str):
                return Path(v)
            if typing.get_origin(arg) is tuple and isinstance(v, list):
                return tuple(v)
        return v
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v)
    if tp is Path:
        return Path(v)
    if typing.get_origin(tp) is tuple:
        return tuple(v)
    return v
