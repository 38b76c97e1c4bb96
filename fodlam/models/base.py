"""What every cost model returns for a layer: an ``Estimate``."""

from __future__ import annotations

from dataclasses import dataclass, field


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
