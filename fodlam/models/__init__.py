"""Cost models: each turns a canonical layer into energy (J) and latency (s), and says how.

A new model is one file here plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..accelerator import load_accelerator
from ..errors import InputError
from .base import Estimate

if TYPE_CHECKING:  # pragma: no cover
    from ..accelerator import Accelerator


def _fodlam2017(accelerator, **options):
    from .fodlam2017 import Fodlam2017
    return Fodlam2017(accelerator, **options)


def _shape(accelerator, **_options):
    from .shape_aware import ShapeAware
    return ShapeAware(accelerator)          # no compat mode: only the 2017 model has one


def _roofline(accelerator, **_options):
    from .roofline import Roofline
    return Roofline(accelerator)


REGISTRY = {"fodlam-2017": _fodlam2017, "fodlam-shape": _shape, "fodlam-roofline": _roofline}


class CostModel(Protocol):
    """What every cost model offers: ``estimate`` costs one canonical layer (with the
    published measurement it names, if any); ``describe`` is the profile JSON's
    ``cost_model`` entry; ``accelerator`` the profile it costs on."""

    name: str
    accelerator: "Accelerator"

    def estimate(self, layer, reference=None) -> Estimate: ...

    def describe(self) -> dict: ...


def build(name: str, accelerator, **options):
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown cost model '{name}'; choose one of {', '.join(sorted(REGISTRY))}") from None
    return factory(accelerator, **options)


def for_accelerator(accelerator=None, *, compat: bool = False, cost_model: str | None = None):
    """The cost model an accelerator profile names (or ``cost_model``), built on it.
    ``accelerator``: a bundled name, a TOML path, an Accelerator or None (the default)."""
    acc = load_accelerator(accelerator)
    return build(cost_model or acc.cost_model, acc, compat=compat)
