"""Every format by name, and formats built from names and spec strings.

Formats live in the registry :data:`FORMATS`; :func:`make_format` and :func:`parse_format`
build them by name or from a spec string such as ``"nm:n=2,m=4"``. Code elsewhere never
branches on a format's name: a new format is its own module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.formats.auto import Auto
from sparsesim.formats.base import Encoded, Format
from sparsesim.formats.bitmap import Bitmap
from sparsesim.formats.compressed import Csc, Csr
from sparsesim.formats.coo import Coo, CooOffset
from sparsesim.formats.dense import Dense
from sparsesim.formats.nm import NM
from sparsesim.formats.rle import RunLength

# One entry per format. The order is Auto's default candidate order (ties go to the earlier
# one) and the order error messages list the known names in.
FORMATS: Mapping[str, type[Format]] = MappingProxyType({cls.name: cls for cls in (
    Dense,
    Bitmap,
    RunLength,
    Coo,
    CooOffset,
    Csr,
    Csc,
    NM,
    Auto,
)})
"""Every format by name."""


def make_format(name: str, **params: Any) -> Format:
    """The format registered under ``name``, built with ``params`` (e.g. ``nm``, n=2, m=4)."""
    cls = FORMATS.get(name)
    if cls is None:
        raise SparsesimError(f"unknown format {name!r}; known: {', '.join(FORMATS)}",
                             field="format")
    try:
        return cls(**params)
    except TypeError as exc:  # unknown or misspelt parameter
        raise SparsesimError(f"format {name!r}: {exc}", field="format") from None


def _parse_value(text: str) -> Any:
    if text.lower() == "none":
        return None
    if "+" in text:
        return tuple(_parse_value(t) for t in text.split("+"))
    try:
        return int(text)
    except ValueError:
        return text


def parse_format(spec: str) -> Format:
    """A format from ``"name"`` or ``"name:key=value,..."`` (the inverse of ``Format.spec``).

    Values are integers, ``none``, ``a+b`` tuples or words; ``auto`` takes
    ``candidates=spec|spec|...`` as its last parameter.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SparsesimError(f"a format spec must be a non-empty string, got {spec!r}",
                             field="format")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    if "candidates=" in rest:
        rest, _, cands = rest.partition("candidates=")
        params["candidates"] = tuple(parse_format(c) for c in cands.split("|"))
        rest = rest.rstrip(",")
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SparsesimError(f"format spec {spec!r}: expected key=value, got {item!r}",
                                 field="format")
        params[key.strip()] = _parse_value(value.strip())
    return make_format(name.strip(), **params)


def as_format(fmt: str | Format) -> Format:
    """``fmt`` itself if it is a :class:`Format`, else the format its spec string names."""
    if isinstance(fmt, Format):
        return fmt
    return parse_format(fmt)


# ---------------------------------------------------------------------------------------------
# whole tensors


def encode(dense: object, fmt: str | Format, *, value_bits: int | None = None,
           name: str = "tensor") -> Encoded:
    """Encode ``dense`` in ``fmt`` (a name, spec or :class:`Format`)."""
    return as_format(fmt).encode(dense, value_bits=value_bits, name=name)


def decode(enc: Encoded) -> np.ndarray:
    """The dense tensor back from any :class:`Encoded`."""
    return enc.format.decode(enc)


def with_widths(fmt: str | Format, widths: Mapping[str, Any] | None) -> Format:
    """``fmt`` with some parameters replaced, e.g. ``{"index_bits": 8}`` (None: unchanged)."""
    f = as_format(fmt)
    if not widths:
        return f
    params = {fl.name: getattr(f, fl.name) for fl in fields(f)}  # type: ignore[arg-type]
    unknown = set(widths) - set(params)
    if unknown:
        raise SparsesimError(f"format {f.name!r} has no parameter {sorted(unknown)[0]!r}; it "
                             f"has {', '.join(params) or 'none'}", field="format")
    return make_format(f.name, **{**params, **widths})

