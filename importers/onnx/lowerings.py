"""The op-lowering table: (domain, op_type) -> a small function per op family that reads
ONNX attributes and shapes and calls the builders of ``fodlam.layers`` / ``fodlam.ops``."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from fodlam import layers as L
from fodlam import ops as OPS
from fodlam.errors import ModelError

import onnx
from onnx import helper

from ._common import _MAC_OPS, UnknownDim, _node_name, _numel
from .shapes import Graph


Lowering = Callable[["Ctx"], "list[L.Layer] | tuple"]
LOWERINGS: dict[tuple[str, str], Lowering] = {}
MS = "com.microsoft"


def lowering(*op_types: str, domain: str = "", macs: bool = False):
    """Register ``fn`` as the lowering of ``op_types`` in ``domain``; ``macs``: the ops
    multiply-accumulate (shape folding never evaluates them). An op registered twice is a
    bug, refused at import."""
    def register(fn):
        for op in op_types:
            if (domain, op) in LOWERINGS:
                raise ValueError(f"ONNX lowering for {domain or 'ai.onnx'}::{op} registered twice "
                                 f"({LOWERINGS[domain, op].__name__} and {fn.__name__})")
            LOWERINGS[domain, op] = fn
            if macs:
                _MAC_OPS.add(op)
        return fn
    return register


# --------------------------------------------------------------------------------------
# Lowering context
# --------------------------------------------------------------------------------------

class Ctx:
    """What a lowering reads: the node, its attributes and the graph's shapes; a lowering
    may leave a ``note`` for the node's report."""

    def __init__(self, graph: Graph, node):
        self.g = graph
        self.node = node
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute
                      if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)}
        self.note = ""

    def attr(self, name, default=None):
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    def has_input(self, i: int) -> bool:
        return len(self.node.input) > i and bool(self.node.input[i])

    def in_shape(self, i: int = 0) -> tuple[int, ...]:
        if not self.has_input(i):
            raise ModelError(f"node '{_node_name(self.node)}' ({self.node.op_type}) lacks input {i}")
        return self.g.shape(self.node.input[i], self.node, f"input {i}")

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        if len(self.node.output) <= i or not self.node.output[i]:
            raise ModelError(f"node '{_node_name(self.node)}' ({self.node.op_type}) lacks output {i}")
        return self.g.shape(self.node.output[i], self.node, f"output {i}")

    def out_shape_or_none(self, i: int = 0):
        try:
            return self.out_shape(i)
        except (UnknownDim, ModelError):
            return None

    def static(self, i: int) -> bool:
        return self.has_input(i) and self.g.is_static(self.node.input[i])

    def value(self, i: int):
        return self.g.value(self.node.input[i]) if self.has_input(i) else None

    def numel_out(self, i: int = 0) -> int:
        return _numel(self.out_shape(i))

    def numel_in(self, i: int = 0) -> int:
        return _numel(self.in_shape(i))


# --------------------------------------------------------------------------------------
# Lowerings: MAC-bearing ops
# --------------------------------------------------------------------------------------

def _same_pads(in_size, kernel, stride, dilation):
    out = []
    for i, k, s, d in zip(in_size, kernel, stride, dilation):
        o = -(-i // s)
        out.append(max(0, (o - 1) * s + (k - 1) * d + 1 - i))
    return out


def _conv_common(ctx: Ctx, x_idx: int, w_idx: int, *, transposed=False, nhwc=False, bits=None):
    x = ctx.in_shape(x_idx)
    w = ctx.in_shape(w_idx)
    if len(x) < 3:
        raise ModelError(f"node '{_node_name(ctx.node)}' ({ctx.node.op_type}): input rank {len(x)} < 3")
    if nhwc:
        batch, spatial, channels = x[0], x[1:-1], x[-1]
    else:
        batch, channels, spatial = x[0], x[1], x[2:]
    n = len(spatial)
    kernel = tuple(ctx.attr("kernel_shape") or w[2:])
    stride = tuple(ctx.attr("strides") or (1,) * n)
    dilation = tuple(ctx.attr("dilations") or (1,) * n)
    group = int(ctx.attr("group", 1) or 1)
    pads = ctx.attr("pads")
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    out = ctx.out_shape_or_none(0)
    if transposed:
        out_channels = w[1] * group
        if pads:
            pad_total = [pads[i] + pads[i + n] for i in range(n)]
        else:
            pad_total = [0] * n
        out_spatial = None
        if out is not None:
            out_spatial = out[2:] if not nhwc else out[1:-1]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER") and out_spatial is None:
            out_spatial = tuple(i * s for i, s in zip(spatial, stride))
        return L.conv(batch, channels, out_channels, spatial, kernel, stride, pad_total, dilation,
                      group, out_size=out_spatial, transposed=True,
                      output_padding=tuple(ctx.attr("output_padding") or (0,) * n), bits=bits)
    out_channels = w[0]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pad_total = _same_pads(spatial, kernel, stride, dilation)
    elif auto_pad == "VALID" or not pads:
        pad_total = [0] * n
    else:
        pad_total = [pads[i] + pads[i + n] for i in range(n)]
    out_spatial = None
    if out is not None:
        out_spatial = out[2:] if not nhwc else out[1:-1]
    return L.conv(batch, channels, out_channels, spatial, kernel, stride, pad_total, dilation,
                  group, out_size=out_spatial, bits=bits)


@lowering("Conv", macs=True)
@lowering("FusedConv", domain=MS, macs=True)
def _conv(ctx):
    layers = [_conv_common(ctx, 0, 1)]
    act = ctx.attr("activation")
    if act and OPS.known(act):
        layers.append(OPS.lower(act, layers[0].output_elems))
    return layers


@lowering("NhwcConv", "NhwcFusedConv", domain=MS, macs=True)
def _nhwc_conv(ctx):
    return [_conv_common(ctx, 0, 1, nhwc=True)]


@lowering("ConvInteger", macs=True)
def _conv_integer(ctx):
    return [_conv_common(ctx, 0, 1, bits=8)]


@lowering("QLinearConv", macs=True)
@lowering("QLinearConv", domain=MS, macs=True)
def _qlinear_conv(ctx):
    return [_conv_common(ctx, 0, 3, bits=8)]


@lowering("ConvTranspose", macs=True)
def _conv_transpose(ctx):
    return [_conv_common(ctx, 0, 1, transposed=True)]


@lowering("QLinearConvTranspose", domain=MS, macs=True)
def _qconv_transpose(ctx):
    return [_conv_common(ctx, 0, 3, transposed=True, bits=8)]


def _mm(ctx, a_idx, b_idx, *, trans_a=False, trans_b=False, bits=None):
    a = list(ctx.in_shape(a_idx))
    b = list(ctx.in_shape(b_idx))
    if trans_a and len(a) >= 2:
        a[-1], a[-2] = a[-2], a[-1]
    if trans_b and len(b) >= 2:
        b[-1], b[-2] = b[-2], b[-1]
    return L.matmul(a, b, a_is_weight=ctx.static(a_idx), b_is_weight=ctx.static(b_idx), bits=bits)


def _bias_layer(ctx, layer, bias_idx):
    if ctx.has_input(bias_idx):
        return [layer, OPS.lower("add", layer.output_elems)]
    return [layer]


@lowering("MatMul", macs=True)
def _matmul(ctx):
    return [_mm(ctx, 0, 1)]


@lowering("MatMulInteger", macs=True)
def _matmul_integer(ctx):
    return [_mm(ctx, 0, 1, bits=8)]


@lowering("QLinearMatMul", macs=True)
def _qlinear_matmul(ctx):
    return [_mm(ctx, 0, 3, bits=8)]


@lowering("Gemm", macs=True)
def _gemm(ctx):
    layer = _mm(ctx, 0, 1, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))
    return _bias_layer(ctx, layer, 2)


@lowering("FusedGemm", domain=MS, macs=True)
def _fused_gemm(ctx):
    layers = _gemm(ctx)
    act = ctx.attr("activation")
    if act and OPS.known(act):
        layers.append(OPS.lower(act, layers[0].output_elems))
    return layers


@lowering("FusedMatMul", domain=MS, macs=True)
def _fused_matmul(ctx):
    return [_mm(ctx, 0, 1, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))]


@lowering("QGemm", domain=MS, macs=True)
def _qgemm(ctx):
    layer = _mm(ctx, 0, 3, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)),
                bits=8)
    return _bias_layer(ctx, layer, 6)


@lowering("MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain=MS, macs=True)
def _ms_int_matmul(ctx):
    return [_mm(ctx, 0, 1, bits=8)]


@lowering("MatMulNBits", "MatMulBnb4", "MatMulFpQ4", domain=MS, macs=True)
def _matmul_nbits(ctx):
    a = ctx.in_shape(0)
    k = int(ctx.attr("K") or a[-1])
    n = int(ctx.attr("N"))
    bits = int(ctx.attr("bits", 4) or 4)
    rows = _numel(a[:-1])
    layer = L.fc(rows, k, n, bits=bits)
    ctx.note = f"{bits}-bit weights"
    return [layer]


@lowering("Einsum", macs=True)
def _einsum(ctx):
    eq = ctx.attr("equation")
    shapes = [ctx.in_shape(i) for i in range(len(ctx.node.input))]
    return [L.einsum(eq, shapes, [ctx.static(i) for i in range(len(shapes))])]


@lowering("Attention", macs=True)
def _onnx_attention(ctx):
    """ai.onnx Attention (opset 23): Q, K, V as (B, heads, S, H) or (B, S, heads*H)."""
    q, k, v = ctx.in_shape(0), ctx.in_shape(1), ctx.in_shape(2)
    if len(q) == 4:
        b, heads, s, hq = q
        kv_len = k[2]
        hv = v[3]
    else:
        heads = int(ctx.attr("q_num_heads") or 1)
        kv_heads = int(ctx.attr("kv_num_heads") or heads)
        b, s = q[0], q[1]
        hq = q[2] // heads
        kv_len = k[1]
        hv = v[2] // kv_heads
    if ctx.has_input(4) and ctx.has_input(5):  # past key / value extend the sequence
        past = ctx.in_shape(4)
        kv_len += past[2] if len(past) == 4 else 0
    return L.attention(b * heads, s, kv_len, hq, hv)


@lowering("Attention", domain=MS, macs=True)
def _ms_attention(ctx):
    """com.microsoft Attention: input (B, S, D) @ packed QKV weights, then attention."""
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)
    heads = int(ctx.attr("num_heads"))
    b, s, d = x
    sizes = ctx.attr("qkv_hidden_sizes")
    qh, kh, vh = (tuple(sizes) if sizes else (w[1] // 3,) * 3)
    layers = [L.fc(b * s, d, w[1]), OPS.lower("add", b * s * w[1])]
    kv_len = s
    if ctx.has_input(4):  # past (2, B, heads, past_len, H)
        past = ctx.in_shape(4)
        kv_len += past[3]
    layers += L.attention(b * heads, s, kv_len, qh // heads, vh // heads)
    return layers


@lowering("MultiHeadAttention", "DecoderMaskedMultiHeadAttention", domain=MS, macs=True)
def _ms_mha(ctx):
    q = ctx.in_shape(0)
    heads = int(ctx.attr("num_heads"))
    b, s = q[0], q[1]
    if len(q) == 5:  # packed QKV (B, S, heads, 3, H)
        head = q[4]
        return L.attention(b * heads, s, s, head, head)
    if len(q) == 3 and not ctx.has_input(1):
        raise ModelError(f"node '{_node_name(ctx.node)}': MultiHeadAttention without key input")
    k = ctx.in_shape(1)
    head_q = q[2] // heads
    if len(k) == 5:  # packed KV (B, L, heads, 2, H)
        kv_len, head_v = k[1], k[4]
    elif len(k) == 4:  # (B, heads, L, H)
        kv_len = k[2]
        head_v = ctx.in_shape(2)[3] if ctx.has_input(2) else k[3]
    else:
        kv_len = k[1]
        head_v = ctx.in_shape(2)[2] // heads if ctx.has_input(2) else head_q
    if ctx.has_input(6):  # past_key (B, heads, past, H)
        kv_len += ctx.in_shape(6)[2]
    return L.attention(b * heads, s, kv_len, head_q, head_v)


@lowering("GroupQueryAttention", domain=MS, macs=True)
def _gqa(ctx):
    q = ctx.in_shape(0)
    heads = int(ctx.attr("num_heads"))
    kv_heads = int(ctx.attr("kv_num_heads") or heads)
    b, s = q[0], q[1]
    if ctx.has_input(1):
        head = q[2] // heads
    else:  # packed QKV
        head = q[2] // (heads + 2 * kv_heads)
    kv_len = s
    if ctx.has_input(3):  # past_key (B, kv_heads, past, H)
        past = ctx.in_shape(3)
        if len(past) == 4:
            kv_len = max(kv_len, past[2])
    return L.attention(b * heads, s, kv_len, head, head)


def _rnn(ctx, cell):
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)
    hidden = int(ctx.attr("hidden_size") or w[1] // L.RNN_GATES[cell])
    direction = ctx.attr("direction", "forward") or "forward"
    dirs = 2 if direction == "bidirectional" else 1
    layout = int(ctx.attr("layout", 0) or 0)
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    return [L.recurrent(cell, seq, batch, x[2], hidden, directions=dirs)]


def _rnn_lowering(cell: str):
    """The lowering of a recurrent op of ``cell`` type (a named factory, one per cell)."""
    def lower(ctx):
        return _rnn(ctx, cell)
    lower.__name__ = lower.__qualname__ = f"lower_{cell}"
    return lower


lowering("LSTM", macs=True)(_rnn_lowering("lstm"))
lowering("GRU", macs=True)(_rnn_lowering("gru"))
lowering("RNN", macs=True)(_rnn_lowering("rnn"))
lowering("DynamicQuantizeLSTM", domain=MS, macs=True)(_rnn_lowering("lstm"))


# --------------------------------------------------------------------------------------
# Lowerings: non-MAC ops
# --------------------------------------------------------------------------------------

def _pool(ctx, mode, global_=False, nhwc=False):
    x = ctx.in_shape(0)
    out = ctx.out_shape(0)
    if nhwc:
        batch, channels, spatial, out_spatial = x[0], x[-1], x[1:-1], out[1:-1]
    else:
        batch, channels, spatial, out_spatial = x[0], x[1], x[2:], out[2:]
    kernel = spatial if global_ else tuple(ctx.attr("kernel_shape") or spatial)
    return [L.pool(mode, batch, channels, spatial, out_spatial, kernel)]


def _pool_lowering(mode: str, global_: bool = False, nhwc: bool | None = False):
    """The lowering of a pooling op (a named factory): ``nhwc=None`` reads the layout from
    the node's ``channels_last`` attribute."""
    def lower(ctx):
        layout = bool(ctx.attr("channels_last", 0)) if nhwc is None else nhwc
        return _pool(ctx, mode, global_, layout)
    lower.__name__ = lower.__qualname__ = f"lower_{'global_' if global_ else ''}{mode}_pool"
    return lower


lowering("MaxPool")(_pool_lowering("max"))
lowering("AveragePool")(_pool_lowering("avg"))
lowering("LpPool")(_pool_lowering("lp"))
lowering("GlobalMaxPool")(_pool_lowering("max", True))
lowering("GlobalAveragePool")(_pool_lowering("avg", True))
lowering("GlobalLpPool")(_pool_lowering("lp", True))
lowering("QLinearAveragePool", domain=MS)(_pool_lowering("avg", nhwc=None))
lowering("QLinearGlobalAveragePool", domain=MS)(_pool_lowering("avg", True, nhwc=None))
lowering("NhwcMaxPool", domain=MS)(_pool_lowering("max", nhwc=True))


@lowering("MaxRoiPool", "RoiAlign")
def _roi(ctx):
    out = ctx.out_shape(0)
    taps = 4 * int(ctx.attr("sampling_ratio", 2) or 2) ** 2 if ctx.node.op_type == "RoiAlign" else 1
    return [L.Elementwise(category="pool", fn=ctx.node.op_type, inputs=ctx.numel_in(0),
                          outputs=_numel(out), operations=_numel(out) * taps)]


@lowering("DeformConv", macs=True)
def _deform_conv(ctx):
    """A convolution whose taps sample the input at learned offsets: the conv's MACs plus a
    bilinear interpolation (4 reads, 3 blends) per sampled input value."""
    conv = _conv_common(ctx, 0, 1)
    samples = conv.batch * conv.in_channels * math.prod(conv.kernel) * math.prod(conv.out_size)
    return [conv, L.Elementwise(category="gather", fn="DeformConv.sample", inputs=conv.input_elems,
                                outputs=samples, operations=7 * samples)]


@lowering("NonMaxSuppression")
def _nms(ctx):
    """First order: every pair of boxes of a class is compared once (IoU + threshold)."""
    boxes, scores = ctx.in_shape(0), ctx.in_shape(1)
    n, c, b = scores[0], scores[1], boxes[1]
    pairs = n * c * b * max(b - 1, 0) // 2
    return [L.Elementwise(category="reduce", fn="NonMaxSuppression", inputs=n * c * b * 5,
                          outputs=n * c * b, operations=pairs * 8)]


@lowering("LRN")
def _lrn(ctx):
    n = ctx.numel_out(0)
    size = int(ctx.attr("size", 5) or 5)
    return [L.Elementwise(category="norm", fn="LRN", inputs=n, outputs=n, operations=n * (size + 3))]


@lowering("Resize", "Upsample")
def _resize(ctx):
    out = ctx.out_shape(0)
    mode = ctx.attr("mode", "nearest") or "nearest"
    spatial = max(len(out) - 2, 1)
    taps = 1 if mode == "nearest" else (4 ** spatial if mode == "cubic" else 2 ** spatial)
    n = _numel(out)
    return [L.Elementwise(category="eltwise", fn="Resize", inputs=ctx.numel_in(0), outputs=n,
                          operations=n * taps)]


@lowering("EmbedLayerNormalization", domain=MS)
def _embed_ln(ctx):
    out = ctx.out_shape(0)
    n = _numel(out)
    return [OPS.lower("gather", n), OPS.lower("add", n), OPS.lower("layernormalization", n)]


def _generic(ctx) -> list:
    """Non-MAC ops through the shared table in fodlam.ops."""
    op = ctx.node.op_type
    if OPS.is_view(op):
        return [L.Elementwise(category="data", fn=op, inputs=0, outputs=0, operations=0)]
    out = ctx.out_shape_or_none(0)
    in_elems = None
    if ctx.has_input(0) and ctx.node.input[0] in ctx.g.shapes:
        try:
            in_elems = ctx.numel_in(0)
        except (UnknownDim, ModelError):
            in_elems = None
    if out is None:
        if in_elems is None:
            ctx.out_shape(0)  # raises the actionable error
        # output shape unresolved (data-dependent): first-order, as large as the input
        ctx.note = "output shape unresolved: costed on the input's element count"
        basis = 1 if OPS.lookup(op)[0] == "reduce" else in_elems
        return [OPS.lower(op, basis, in_elems)]
    return [OPS.lower(op, _numel(out), in_elems)]


_GENERIC_ONNX = [
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt",
    "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Tan", "Asin",
    "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Clip", "Not", "Shrink", "IsNaN",
    "IsInf", "Cast", "CastLike", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum",
    "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where",
    "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "Softmax",
    "LogSoftmax", "Hardmax", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "ReduceMean",
    "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum", "TopK", "Gather",
    "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "OneHot",
    "Transpose", "Concat", "Split", "Slice", "Pad", "Tile", "Expand", "DepthToSpace",
    "SpaceToDepth", "ConstantOfShape", "Range", "Trilu", "Compress", "ReverseSequence",
    "Col2Im", "CenterCropPad", "EyeLike", "NonZero", "Unique", "GridSample", "AffineGrid",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size",
    "Constant", "Dropout", "Optional", "OptionalGetElement", "OptionalHasElement",
    "SequenceConstruct", "SequenceAt", "SequenceLength", "SequenceEmpty", "SequenceInsert",
    "SequenceErase", "ConcatFromSequence", "SplitToSequence", "DFT", "STFT",
    "BlackmanWindow", "HannWindow", "HammingWindow", "MelWeightMatrix", "SimplifiedLayerNormalization",
    "RotaryEmbedding", "Swish", "SwiGLU", "CumProd", "TensorScatter", "MaxUnpool", "BitCast",
    "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss",
]
_GENERIC_MS = [
    "FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearConcat", "BiasSoftmax",
    "Gather", "Range", "Trilu", "GridSample", "RotaryEmbedding", "BiasDropout", "FusedGelu",
]
for _op in _GENERIC_ONNX:
    LOWERINGS.setdefault(("", _op), _generic)
# ops added to fodlam.ops under their plain name; quantized variants map to the float one
_MS_ALIASES = {"QLinearAdd": "add", "QLinearMul": "mul", "QLinearSigmoid": "sigmoid",
               "QLinearLeakyRelu": "leakyrelu", "QLinearSoftmax": "softmax",
               "QLinearConcat": "concat", "BiasSoftmax": "softmax", "RotaryEmbedding": "mul",
               "BiasDropout": "add", "FusedGelu": "gelu"}


def _ms_generic(ctx):
    alias = _MS_ALIASES.get(ctx.node.op_type)
    if alias:
        out = ctx.out_shape(0)
        ops_per = {"RotaryEmbedding": 3}.get(ctx.node.op_type, 1)
        layer = OPS.lower(alias, _numel(out))
        return [replace(layer, fn=ctx.node.op_type, operations=layer.operations * ops_per)]
    return _generic(ctx)


for _op in _GENERIC_MS:
    LOWERINGS.setdefault((MS, _op), _ms_generic)
