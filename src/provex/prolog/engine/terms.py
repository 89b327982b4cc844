"""Python values for Prolog terms returned by the engine.

Numbers map to Python numbers: integers to ``int``, floats to ``float`` and
rationals such as ``15r2`` to ``fractions.Fraction``. Prolog strings map to
``str`` and proper lists to ``list``. The classes below cover the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Var:
    """An unbound (possibly constrained) variable, named as ``write/1`` prints it."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Atom:
    """A Prolog atom such as ``foo`` or ``'hello world'``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Compound:
    """A compound term ``name(arg1, ..., argN)``. Partial lists use ``'[|]'``."""

    name: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Opaque:
    """A term kept only as text: a cyclic term, a blob, or a term nested too deep."""

    text: str

    def __str__(self) -> str:
        return self.text


_MAX_DIGITS = 4000  # below CPython's default limit on int(str) conversions


def _parse_int(text: str) -> int:
    # Split long digit strings so that huge Prolog integers convert without
    # touching the interpreter-wide sys.set_int_max_str_digits setting.
    digits = text.lstrip("-")
    if len(digits) <= _MAX_DIGITS:
        return int(text)
    sign = -1 if text.startswith("-") else 1
    half = len(digits) // 2
    high, low = digits[:half], digits[half:]
    return sign * (_parse_int(high) * 10 ** len(low) + _parse_int(low))


def _parse_float(text: str) -> float:
    # SWI-Prolog writes special floats as 1.0Inf, -1.0Inf and 1.5NaN.
    if text.endswith("Inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text.endswith("NaN"):
        return math.nan
    return float(text)


def decode_term(node: dict[str, Any]) -> Any:
    """Rebuild a Python value from the tagged JSON that ``runner.pl`` writes.

    Args:
        node: an object with a type tag ``t`` (``int``, ``float``, ``rat``,
            ``atom``, ``str``, ``var``, ``list``, ``cmp`` or ``other``).

    Returns:
        The value: ``int``, ``float``, ``Fraction``, ``Atom``, ``str``, ``Var``,
        ``list``, ``Compound`` or ``Opaque``.

    Example:
        >>> decode_term({"t": "rat", "n": "15", "d": "2"})
        Fraction(15, 2)
    """
    tag = node["t"]
    if tag == "int":
        return _parse_int(node["v"])
    if tag == "float":
        return _parse_float(node["v"])
    if tag == "rat":
        return Fraction(_parse_int(node["n"]), _parse_int(node["d"]))
    if tag == "atom":
        return Atom(node["v"])
    if tag == "str":
        return node["v"]
    if tag == "var":
        return Var(node["v"])
    if tag == "list":
        return [decode_term(item) for item in node["v"]]
    if tag == "cmp":
        return Compound(node["name"], tuple(decode_term(arg) for arg in node["v"]))
    return Opaque(str(node.get("v", "")))
