"""Process-technology scaling of published figures to a target node."""

from __future__ import annotations

#: Scaling rules by name. Each maps (from_nm, to_nm) to (latency factor, power factor).
#: "dennard" is the rule of the 2017 FODLAM: delay ~ L, power ~ L^2 (s = to / from).


def dennard(from_nm: float, to_nm: float) -> tuple[float, float]:
    s = to_nm / from_nm
    return s, s * s


RULES = {"dennard": dennard}


def scale(rule: str, from_nm: float, to_nm: float) -> tuple[float, float]:
    """(latency factor, power factor) to move a measurement from ``from_nm`` to ``to_nm``."""
    if from_nm == to_nm:
        return 1.0, 1.0
    return RULES[rule](from_nm, to_nm)
