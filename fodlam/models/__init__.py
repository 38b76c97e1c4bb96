"""Cost models: each turns a canonical layer into energy (J) and latency (s), and says how.

A new model is one file here plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    #: energy by component (compute, global_buffer, ...), where the model gives one
    components: dict | None = field(default=None, compare=False)
    #: [low, high] ranges from the calibration residuals, where the model gives them
    energy_interval: list | None = field(default=None, compare=False)
    latency_interval: list | None = field(default=None, compare=False)
    #: the engine that ran the layer, why it was chosen, its mapping and what bound it
    engine: str | None = field(default=None, compare=False)
    engine_reason: str | None = field(default=None, compare=False)
    mapping: dict | None = field(default=None, compare=False)
    bound: str | None = field(default=None, compare=False)


def _fodlam2017(accelerator, **options):
    from .fodlam2017 import Fodlam2017
    return Fodlam2017(accelerator, **options)


def _shape(accelerator, **options):
    from .shape_aware import ShapeAware
    return ShapeAware(accelerator, **options)


def _roofline(accelerator, **options):
    from .roofline import Roofline
    return Roofline(accelerator, **options)


REGISTRY = {"fodlam-2017": _fodlam2017, "fodlam-shape": _shape, "fodlam-roofline": _roofline}


def build(name: str, accelerator, **options):
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown cost model '{name}'; choose one of {', '.join(sorted(REGISTRY))}") from None
    return factory(accelerator, **options)
