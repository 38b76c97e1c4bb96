"""Canonical layer formulas against hand-computed values."""

import pytest

from fodlam import layers as L
from fodlam.errors import LayerError


def test_alexnet_conv1_strided():
    c = L.conv(1, 3, 96, (227, 227), 11, stride=4)
    assert c.out_size == (55, 55)
    assert c.macs == 55 * 55 * 96 * 3 * 11 * 11 == 105_415_200
    assert c.weight_elems == 96 * 3 * 121
    assert c.input_elems == 3 * 227 * 227
    assert c.output_elems == 96 * 55 * 55


def test_grouped_conv_alexnet_conv2():
    c = L.conv(1, 96, 256, 27, 5, padding=2, groups=2)
    assert c.out_size == (27, 27)
    # each output sees in_channels / groups = 48 channels
    assert c.macs == 27 * 27 * 256 * 48 * 25 == 223_948_800
    assert c.weight_elems == 256 * 48 * 25


def test_depthwise_and_batch():
    c = L.conv(8, 32, 32, (112, 112), 3, stride=2, padding=(1, 1), groups=32)
    # total padding 1 per axis (asymmetric, TF "SAME" style): (112 + 1 - 3) // 2 + 1 = 56
    assert c.out_size == (56, 56)
    assert c.depthwise
    assert c.macs == 8 * 32 * 56 * 56 * 1 * 9


def test_dilated_conv_out_size():
    c = L.conv(1, 16, 16, (64, 64), 3, padding=2, dilation=2)
    assert c.out_size == (64, 64)
    assert c.macs == 64 * 64 * 16 * 16 * 9


def test_conv1d_and_3d():
    c1 = L.conv(2, 4, 8, (100,), 5)
    assert c1.out_size == (96,)
    assert c1.macs == 2 * 8 * 96 * 4 * 5
    c3 = L.conv(1, 3, 16, (16, 32, 32), (3, 3, 3), padding=1)
    assert c3.out_size == (16, 32, 32)
    assert c3.macs == 16 * 16 * 32 * 32 * 3 * 27


def test_transposed_conv():
    # 2x upsampling: 16x16 -> 32x32, kernel 4, stride 2, pad 1 each side
    c = L.conv(1, 64, 32, (16, 16), 4, stride=2, padding=1, transposed=True)
    assert c.out_size == (32, 32)
    # every input pixel scatters into kernel x out_channels
    assert c.macs == 64 * 16 * 16 * 32 * 16
    grouped = L.conv(1, 64, 32, (16, 16), 4, stride=2, padding=1, groups=4, transposed=True)
    assert grouped.macs == 64 * 16 * 16 * 8 * 16


def test_conv_errors():
    with pytest.raises(LayerError, match="groups"):
        L.conv(1, 3, 64, 32, 3, groups=2)
    with pytest.raises(LayerError, match="output size"):
        L.conv(1, 3, 8, 2, 5)
    with pytest.raises(LayerError):
        L.conv(0, 3, 8, 32, 3)


def test_fc():
    f = L.fc(1, 9216, 4096)
    assert f.kind == "fc"
    assert f.macs == 9216 * 4096
    assert f.weight_elems == 9216 * 4096
    assert L.fc(4, 10, 3).macs == 120
    with pytest.raises(LayerError, match="density"):
        L.fc(1, 2, 2, weight_density=0)


def test_matmul_weight_vs_activation():
    # x (2, 128, 768) @ W (768, 3072): a linear layer over 256 token vectors
    lin = L.matmul((2, 128, 768), (768, 3072), b_is_weight=True)
    assert lin.kind == "fc" and lin.batch == 256 and lin.macs == 256 * 768 * 3072
    # attention scores: (2, 12, 128, 64) @ (2, 12, 64, 128), both activations
    att = L.matmul((2, 12, 128, 64), (2, 12, 64, 128))
    assert att.kind == "matmul" and att.macs == 2 * 12 * 128 * 64 * 128
    # broadcast batch dims and 1-D operands
    assert L.matmul((5, 1, 3, 4), (6, 4, 2)).macs == 5 * 6 * 3 * 4 * 2
    assert L.matmul((4,), (4,)).macs == 4
    with pytest.raises(LayerError):
        L.matmul((3, 4), (5, 6))


def test_einsum():
    assert L.einsum("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]).macs == 2 * 3 * 4 * 5
    lin = L.einsum("bsd,df->bsf", [(2, 8, 16), (16, 32)], [False, True])
    assert lin.kind == "fc" and lin.macs == 2 * 8 * 16 * 32
    assert L.einsum("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]).macs == 2 * 3 * 4 * 5
    assert L.einsum("...ij,...jk", [(7, 2, 3), (7, 3, 4)]).macs == 7 * 2 * 3 * 4


def test_recurrent_gates():
    lstm = L.recurrent("lstm", seq_len=35, batch=20, input_size=650, hidden_size=650)
    assert lstm.macs == 35 * 20 * 4 * 650 * (650 + 650)
    gru = L.recurrent("gru", 10, 1, 32, 64, directions=2)
    assert gru.macs == 2 * 10 * 3 * 64 * (32 + 64)
    rnn = L.recurrent("rnn", 5, 3, 8, 16)
    assert rnn.macs == 5 * 3 * 16 * 24
    proj = L.recurrent("lstm", 4, 1, 10, 20, proj_size=5)
    assert proj.macs == 4 * (4 * 20 * (10 + 5) + 20 * 5)
    assert lstm.ops > 0


def test_non_mac_kinds_have_no_macs():
    p = L.pool("max", 1, 64, (112, 112), (56, 56), 3)
    assert p.macs == 0 and p.ops == 64 * 56 * 56 * 9
    e = L.elementwise("eltwise", "Relu", 1000)
    assert e.macs == 0 and e.ops == 1000 and e.kind == "eltwise"
    with pytest.raises(LayerError):
        L.elementwise("conv", "x", 1)


def test_counted_and_to_dict():
    c = L.counted("conv", 42)
    assert c.kind == "conv" and c.macs == 42
    d = L.conv(1, 3, 8, 8, 3).to_dict()
    assert d["kind"] == "conv" and d["macs"] == 8 * 6 * 6 * 27 and d["kernel"] == [3, 3]


def test_conv_checks_a_given_out_size():
    assert L.conv(1, 3, 8, (8, 8), 3, out_size=(6, 6)).out_size == (6, 6)
    with pytest.raises(LayerError, match=r"\(5, 5\) disagrees with \(6, 6\)"):
        L.conv(1, 3, 8, (8, 8), 3, out_size=(5, 5))
    # a transposed convolution keeps the size its exporter chose (ONNX output_shape)
    assert L.conv(1, 8, 3, (4, 4), 3, stride=2, transposed=True, out_size=(8, 8)).out_size == (8, 8)


def test_attention_builder_is_two_products_and_a_softmax():
    scores, soft, context = L.attention(24, 128, 256, 64, 32)
    assert scores.macs == 24 * 128 * 64 * 256 and context.macs == 24 * 128 * 256 * 32
    assert soft.kind == "eltwise" and soft.ops == 24 * 128 * 256 * L.SOFTMAX_OPS
