"""pytest helpers: keep a model inside its energy / latency budget.

    from fodlam.testing import assert_within_budget

    def test_classifier_budget():
        assert_within_budget(make_model(), (1, 3, 224, 224), energy="5 mJ", latency="10 ms")

    def test_exported_model_budget():
        assert_within_budget("model.onnx", energy="5 mJ", dims={"batch": 1})
"""

from __future__ import annotations

from pathlib import Path

from .budget import Budget, check_profile
from .units import format_si


def assert_within_budget(model, input_shape=None, *, energy=None, latency=None,
                         accelerator=None, top: int = 5, **kwargs):
    """Profile ``model`` (an nn.Module, or the path of an ONNX file) and raise
    AssertionError if its energy or latency exceeds the budget. Returns the Profile.

    ``energy`` / ``latency`` take SI strings ("5 mJ", "10ms") or numbers in J / s. Other
    keyword arguments go to ``fodlam.profile`` (torch) or ``fodlam.profile_onnx``
    (``input_shapes=``, ``dims=``, ``batch=``).
    """
    import fodlam

    budget = Budget.from_strings(energy, latency)
    if budget.empty:
        raise ValueError("assert_within_budget needs energy= and/or latency=")
    if isinstance(model, (str, Path)):
        profile = fodlam.profile_onnx(model, accelerator=accelerator, **kwargs)
    else:
        profile = fodlam.profile(model, input_shape, accelerator=accelerator, **kwargs)
    result = check_profile(profile, budget, top=top)
    if result.breaches:
        lines = [f"{profile.model.get('name', 'model')} is over its budget on "
                 f"{profile.accelerator.get('name')}:"]
        for b in result.breaches:
            lines.append(f"  {b.describe()}")
        lines.append(f"  estimate: {format_si(result.energy_j, 'J')}, "
                     f"{format_si(result.latency_s, 's')}")
        lines.append("  top layers:")
        for _, e, t, label in result.top:
            lines.append(f"    {label}: {format_si(e, 'J')}, {format_si(t, 's')}")
        raise AssertionError("\n".join(lines))
    return profile
