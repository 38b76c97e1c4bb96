"""Quantities with SI prefixes: parse "5 mJ" -> 0.005, format 0.005 -> "5 mJ".

Units are converted only at the edges (data loading, CLI parsing, formatting);
inside FODLAM energies are joules, latencies seconds, powers watts.
"""

from __future__ import annotations

import math
import re

from .errors import InputError

_PREFIXES = {
    "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
}
_UNITS = {"energy": "J", "latency": "s", "power": "W"}
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([pnuµmkMGT]?)([A-Za-z]*)\s*$")


def parse_quantity(text: str | float | int, quantity: str) -> float:
    """Parse ``text`` as an amount of ``quantity`` ("energy", "latency" or "power").

    Plain numbers are taken in the base unit (J, s, W). ``"5mJ"``, ``"5 mJ"``,
    ``"12ms"``, ``"1.5e-3 s"`` and ``"300 uJ"`` are accepted.
    """
    unit = _UNITS[quantity]
    if isinstance(text, bool):
        raise InputError(f"{quantity} budget {text!r} is not a number; write e.g. '5 mJ'")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _PATTERN.match(str(text))
        if not match:
            raise InputError(
                f"cannot read {text!r} as an {quantity}; write a number with an optional SI "
                f"prefix and unit, e.g. '5 m{unit}', '0.005' or '5e-3 {unit}'")
        number, prefix, suffix = match.groups()
        if suffix and suffix != unit:
            # "5 ms" is prefix m + unit s; a lone prefix letter may also be read as a unit.
            raise InputError(f"{text!r} is not in {unit}; an {quantity} is given in {unit} "
                             f"(e.g. '5 m{unit}')")
        if not suffix and prefix:
            raise InputError(f"{text!r} has a prefix but no unit; write '{number} {prefix}{unit}'")
        value = float(number) * _PREFIXES[prefix]
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{quantity} {text!r} must be a finite, non-negative amount")
    return value


def format_si(value: float, unit: str, digits: int = 3) -> str:
    """Format ``value`` with an SI prefix: format_si(0.0052, "J") == "5.2 mJ"."""
    if value is None or not math.isfinite(value):
        return f"{value} {unit}"
    if value == 0:
        return f"0 {unit}"
    magnitude = abs(value)
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0),
                          ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12)):
        if magnitude >= scale * 0.9995:
            break
    return f"{value / scale:.{digits}g} {prefix}{unit}"


def format_count(value: float) -> str:
    """Format a large count compactly: 1.23e9 -> "1.23 G"."""
    return format_si(value, "").strip()


_XML_INVALID = None


def xml_clean(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (C0 controls other than tab, newline
    and carriage return; lone surrogates; U+FFFE and U+FFFF): every XML and HTML document
    FODLAM writes goes through it, so a model name holding ``\\u0001`` cannot break one."""
    global _XML_INVALID
    if _XML_INVALID is None:
        import re
        _XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
    return _XML_INVALID.sub("\ufffd", text)


def xml_document(fn):
    """Decorate a function returning an XML or HTML document: the result is ``xml_clean``ed."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return xml_clean(fn(*args, **kwargs))
    return wrapper
