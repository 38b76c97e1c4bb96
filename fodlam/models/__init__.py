"""Cost models: each turns a canonical layer into energy (J) and latency (s), and says how.

A new model is one file here plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Estimate:
    """The cost of one layer. ``method`` is one of "lookup" (a published measurement),
    "scale" (MACs x a fitted per-MAC cost), "rule" (a documented first-order rule for a
    kind the published data does not cover) or "none" (nothing to cost)."""

    energy_j: float
    latency_s: float
    method: str
    how: str


def _fodlam2017(accelerator, **options):
    from .fodlam2017 import Fodlam2017
    return Fodlam2017(accelerator, **options)


REGISTRY = {"fodlam-2017": _fodlam2017}


def build(name: str, accelerator, **options):
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown cost model '{name}'; choose one of {', '.join(sorted(REGISTRY))}") from None
    return factory(accelerator, **options)
