"""Dataclasses from plain dicts (parsed JSON, Hydra nodes), with one-line errors.

Every config of the library (sampler settings, stop rules) is a dataclass that checks
its own values in ``__post_init__``; building one from a mapping only has to refuse the
keys it does not know, naming them and the known ones.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], values: Mapping[str, Any], *, label: str,
                        ignore_unknown: bool = False) -> T:
    """``cls(**values)``, the dataclass's own checks included.

    Args:
        cls: a dataclass.
        values: its fields by name; missing ones take their defaults.
        label: what a key is called in the error message, e.g. ``"sampler option"``:
            ``unknown sampler option(s) x, y; known: ...``.
        ignore_unknown: drop the keys that are no field instead of refusing them (a
            description that holds the fields beside other entries).

    Raises:
        ValueError: a key that is no field of ``cls`` (unless ``ignore_unknown``).
    """
    known = {f.name for f in fields(cls)}
    if ignore_unknown:
        values = {k: v for k, v in values.items() if k in known}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {label}(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)
