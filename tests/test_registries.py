"""Registries refuse duplicates, store canonical keys and hold named formulas."""

import pytest

from fodlam import ops


def test_ops_keys_are_canonical_and_collisions_refused():
    assert all(ops.canon(k) == k for k in ops._TABLE)
    with pytest.raises(ValueError, match="registered twice"):
        ops._add("eltwise", 1, "relu")
    with pytest.raises(ValueError, match="canonical key 'leakyrelu'"):
        ops._add("eltwise", 1, "leaky_relu")
    # every spelling an importer meets finds its entry
    for name in ("LeakyRelu", "leaky_relu_", "aten.true_divide", "transpose_view"):
        assert ops.known(name), name


def test_onnx_lowerings_are_named_unique_and_mark_their_macs():
    pytest.importorskip("onnx")
    from fodlam.importers.onnx import LOWERINGS, lowering
    from fodlam.importers.onnx._common import _mac_bearing

    assert all(fn.__name__ != "<lambda>" for fn in LOWERINGS.values())
    with pytest.raises(ValueError, match="registered twice"):
        lowering("Conv")(lambda ctx: [])
    for op in ("Conv", "MatMul", "Gemm", "LSTM", "Attention", "Einsum"):
        assert _mac_bearing(op), op
    for op in ("MaxPool", "Relu", "Resize"):
        assert not _mac_bearing(op), op


def test_aten_lowerings_are_named_unique_and_mark_their_macs():
    pytest.importorskip("torch")
    from fodlam.importers.torch import ATEN, MAC_ATEN, aten

    assert all(fn.__name__ != "<lambda>" for fn in ATEN.values())
    with pytest.raises(ValueError, match="registered twice"):
        aten("linear")(lambda c: [])
    assert {"convolution", "linear", "mm", "addmm", "scaled_dot_product_attention"} <= MAC_ATEN
    assert "max_pool2d" not in MAC_ATEN
