"""Step 3 of the PyTorch front end: the table ``ATEN`` of lowerings, one small function
per aten op family, from a recorded call's argument and result shapes to canonical layers.

An op missing from the table and from ``fodlam.ops`` becomes an unmodeled node (reported,
never dropped). The arithmetic lives in ``fodlam.layers`` and ``fodlam.ops``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import torch

from fodlam import layers as L
from fodlam import ops as OPS

ATEN: dict[str, Callable] = {}
#: aten ops that multiply-accumulate (registered with ``macs=True``)
MAC_ATEN: set[str] = set()


def aten(*names, macs: bool = False):
    """Register ``fn`` as the lowering of the aten ops ``names``; ``macs``: they
    multiply-accumulate. An op registered twice is a bug, refused at import."""
    def register(fn):
        for n in names:
            if n in ATEN:
                raise ValueError(f"aten lowering for {n} registered twice "
                                 f"({ATEN[n].__name__} and {fn.__name__})")
            ATEN[n] = fn
            if macs:
                MAC_ATEN.add(n)
        return fn
    return register


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _numel(t) -> int:
    return int(math.prod(_shape(t))) if isinstance(t, torch.Tensor) else 0


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


class Call:
    """One recorded aten call, as seen by a lowering."""

    def __init__(self, name, args, kwargs, out, tracer, qualified=""):
        self.name = name
        self.qualified = qualified
        self.args = args
        self.kwargs = kwargs
        self.out = out
        self.tracer = tracer

    def arg(self, i, key=None, default=None):
        if len(self.args) > i:
            return self.args[i]
        if key is not None and key in self.kwargs:
            return self.kwargs[key]
        return default

    def is_weight(self, t) -> bool:
        return self.tracer.is_weight(t)

    def sparse(self, layer, weight):
        """The layer with the density measured or given for its weight operand."""
        density = self.tracer.densities.get(self.tracer.origin.get(id(weight)))
        if density is not None and isinstance(layer, L.FullyConnected) and density < 1.0:
            return replace(layer, weight_density=max(density, 1e-6))
        return layer


@aten("convolution", "_convolution", "convolution_overrideable", "mkldnn_convolution",
      "cudnn_convolution", "_conv_depthwise2d", "conv_depthwise3d", "slow_conv2d",
      "thnn_conv2d", "_slow_conv2d_forward", "slow_conv3d", "conv2d", "conv1d", "conv3d", macs=True)
def _conv(c: Call):
    x, w = c.arg(0), c.arg(1)
    n = x.dim() - 2
    name = c.name
    if name in ("convolution", "_convolution", "convolution_overrideable"):
        stride, padding, dilation = c.arg(3), c.arg(4), c.arg(5)
        transposed, output_padding, groups = bool(c.arg(6)), c.arg(7), int(c.arg(8))
    elif name in ("conv1d", "conv2d", "conv3d"):
        stride, padding, dilation, groups = c.arg(3, "stride", 1), c.arg(4, "padding", 0), \
            c.arg(5, "dilation", 1), int(c.arg(6, "groups", 1))
        transposed, output_padding = False, 0
    else:
        stride, padding, dilation = c.arg(4, "stride", 1), c.arg(5, "padding", 0), c.arg(6, "dilation", 1)
        transposed, output_padding, groups = False, 0, int(c.arg(7, "groups", 1) or 1)
        if name == "_conv_depthwise2d":
            groups = _shape(x)[1]
    out = _first_tensor(c.out)
    pads = [2 * int(p) for p in (padding if isinstance(padding, (list, tuple)) else [padding] * n)]
    xs, ws = _shape(x), _shape(w)
    if transposed:
        out_channels = ws[1] * groups
    else:
        out_channels = ws[0]
    return [L.conv(xs[0], xs[1], out_channels, xs[2:], ws[2:], stride, pads, dilation, groups,
                   out_size=_shape(out)[2:], transposed=transposed,
                   output_padding=output_padding or 0)]


def _unpack(packed):
    """(weight, bias) of a quantized module's packed parameters."""
    if hasattr(packed, "unpack"):
        return packed.unpack()
    return torch.ops.quantized.linear_unpack(packed)


@aten("quantized::linear_dynamic", "quantized::linear_relu_dynamic", "quantized::linear_dynamic_fp16",
      "quantized::linear_relu_dynamic_fp16", "quantized::linear", "quantized::linear_relu", macs=True)
def _quantized_linear(c: Call):
    x, packed = c.arg(0), c.arg(1)
    w = _unpack(packed)[0]
    out_f, in_f = _shape(w)
    bits = 16 if "fp16" in c.name else 8
    rows = int(math.prod(_shape(x)[:-1]))
    layers = [L.fc(rows, in_f, out_f, bits=bits), OPS.lower("add", rows * out_f)]
    if "relu" in c.name:
        layers.append(OPS.lower("relu", rows * out_f))
    return layers


@aten("quantized::conv1d", "quantized::conv2d", "quantized::conv3d", "quantized::conv2d_relu",
      "quantized::conv1d_relu", "quantized::conv3d_relu", "quantized::conv_transpose2d", macs=True)
def _quantized_conv(c: Call):
    x, packed = c.arg(0), c.arg(1)
    w = _unpack(packed)[0]
    groups = int(packed.groups())
    transposed = "transpose" in c.name
    xs, ws = _shape(x), _shape(w)
    out = _first_tensor(c.out)
    n = len(xs) - 2
    pads = [2 * int(p) for p in packed.padding()]
    out_channels = ws[1] * groups if transposed else ws[0]
    layers = [L.conv(xs[0], xs[1], out_channels, xs[2:], ws[2:], list(packed.stride())[:n], pads,
                     list(packed.dilation())[:n], groups, out_size=_shape(out)[2:],
                     transposed=transposed, bits=8)]
    if "relu" in c.name:
        layers.append(OPS.lower("relu", layers[0].output_elems))
    return layers


def _mm_layer(c: Call, a, b, bias=None):
    layer = L.matmul(_shape(a), _shape(b), a_is_weight=c.is_weight(a), b_is_weight=c.is_weight(b))
    layer = c.sparse(layer, b if c.is_weight(b) else a)
    out = [layer]
    if bias is not None and isinstance(bias, torch.Tensor):
        out.append(OPS.lower("add", layer.output_elems))
    return out


@aten("mm", "bmm", "matmul", "mv", "dot", "vdot", "_int_mm", macs=True)
def _mm(c: Call):
    return _mm_layer(c, c.arg(0), c.arg(1))


@aten("_grouped_mm", "_scaled_grouped_mm", macs=True)
def _grouped_mm(c: Call):
    """Rows of ``a`` multiplied by the weight of their group (MoE experts called directly):
    every row meets one K x N slice, so it is an fc over the rows."""
    a, b = c.arg(0), c.arg(1)
    sa, sb = _shape(a), _shape(b)
    k, n = sb[-2], sb[-1]
    rows = int(math.prod(sa[:-1])) if len(sa) >= 2 else 1
    layer = L.fc(rows, k, n) if c.is_weight(b) else L.MatMul(batch=1, m=rows, k=k, n=n)
    return [layer]


@aten("addmm", "baddbmm", "addmv", "_addmm_activation", "addbmm", macs=True)
def _addmm(c: Call):
    return _mm_layer(c, c.arg(1), c.arg(2), bias=c.arg(0))


@aten("linear", macs=True)
def _linear(c: Call):
    x, w, b = c.arg(0), c.arg(1), c.arg(2, "bias")
    return [c.sparse(L.fc(_numel(x) // _shape(x)[-1], _shape(w)[1], _shape(w)[0]), w)] + (
        [OPS.lower("add", _numel(c.out))] if isinstance(b, torch.Tensor) else [])


@aten("einsum", macs=True)
def _einsum(c: Call):
    eq, operands = c.arg(0), list(c.arg(1))
    return [L.einsum(eq, [_shape(t) for t in operands], [c.is_weight(t) for t in operands])]


@aten("_trilinear", macs=True)
def _trilinear(c: Call):
    """nn.Bilinear: x1^T W x2 for every output: product of the broadcast of the three
    (unsqueezed) operands; with a weight operand it is an fc over (in1 x in2) features."""
    tensors = [c.arg(0), c.arg(1), c.arg(2)]
    expands = [c.arg(3) or [], c.arg(4) or [], c.arg(5) or []]
    shapes = []
    for t, ex in zip(tensors, expands):
        shape = list(_shape(t))
        for d in sorted(ex):
            shape.insert(d, 1)
        shapes.append(shape)
    total = math.prod(L.broadcast_batch(L.broadcast_batch(shapes[0], shapes[1]), shapes[2]))
    weight = next((t for t in tensors if c.is_weight(t)), None)
    if weight is not None and weight.dim() >= 2:
        w = _numel(weight)
        out = _shape(weight)[0]
        return [L.fc(max(1, total // w), w // out, out)]
    return [L.MatMul(batch=1, m=total, k=1, n=1)]


@aten("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
      "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
      "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_attention_math",
      "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
      "_efficient_attention_forward", macs=True)
def _sdpa(c: Call):
    q, k, v = _shape(c.arg(0)), _shape(c.arg(1)), _shape(c.arg(2))
    bh = int(math.prod(q[:-2]))
    return L.attention(bh, q[-2], k[-2], q[-1], v[-1])


@aten("_native_multi_head_attention", macs=True)
def _native_mha(c: Call):
    q, k = _shape(c.arg(0)), _shape(c.arg(1))
    embed, heads = int(c.arg(3)), int(c.arg(4))
    b, lq, lk = q[0], q[1], k[1]
    proj = [L.fc(b * lq, embed, embed), L.fc(b * lk, embed, 2 * embed)]
    return proj + L.attention(b * heads, lq, lk, embed // heads, embed // heads) + \
        [L.fc(b * lq, embed, embed)]


def _pool_rank(name: str, kernel) -> int:
    if isinstance(kernel, (list, tuple)) and len(kernel) > 1:
        return len(kernel)
    for n in (3, 2, 1):
        if f"{n}d" in name:
            return n
    return 2


def _pool_layer(c: Call, mode: str, kernel=None):
    x, out = c.arg(0), _first_tensor(c.out)
    xs, os_ = _shape(x), _shape(out)
    nsp = min(_pool_rank(c.name, kernel), len(xs) - 1) if len(xs) > 1 else 1
    if kernel is None:  # adaptive: window ~ input / output
        kernel = tuple(max(1, -(-i // o)) for i, o in zip(xs[-nsp:], os_[-nsp:]))
    elif isinstance(kernel, int) or len(kernel) == 1:
        kernel = (int(kernel if isinstance(kernel, int) else kernel[0]),) * nsp
    batch = int(math.prod(xs[:-nsp - 1])) if len(xs) > nsp + 1 else 1
    channels = xs[-nsp - 1] if len(xs) > nsp else 1
    return [L.pool(mode, batch, channels, xs[-nsp:], os_[-nsp:], tuple(kernel))]


@aten("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
      "max_pool3d_with_indices", "max_pool1d_with_indices", "mkldnn_max_pool2d",
      "quantized_max_pool2d", "fractional_max_pool2d", "fractional_max_pool3d")
def _max_pool(c: Call):
    return _pool_layer(c, "max", c.arg(1))


@aten("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(c: Call):
    return _pool_layer(c, "avg", c.arg(1))


@aten("lp_pool1d", "lp_pool2d")
def _lp_pool(c: Call):
    return _pool_layer(c, "lp", c.arg(2))


@aten("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
      "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "mkldnn_adaptive_avg_pool2d")
def _adaptive_avg(c: Call):
    return _pool_layer(c, "avg")


@aten("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_max(c: Call):
    return _pool_layer(c, "max")


@aten("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact2d",
      "upsample_bilinear2d", "upsample_linear1d", "upsample_trilinear3d", "upsample_bicubic2d",
      "_upsample_bilinear2d_aa", "_upsample_nearest_exact1d", "_upsample_nearest_exact3d")
def _upsample(c: Call):
    out = _first_tensor(c.out)
    n = _numel(out)
    taps = 1 if "nearest" in c.name else (16 if "bicubic" in c.name else 2 ** max(out.dim() - 2, 1))
    return [L.Elementwise(category="eltwise", fn="Resize", inputs=_numel(c.arg(0)), outputs=n,
                          operations=n * taps)]


@aten("_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit",
      "batch_norm", "native_layer_norm", "layer_norm", "native_group_norm", "group_norm",
      "instance_norm", "rms_norm", "_fused_rms_norm")
def _norm(c: Call):
    n = _numel(c.arg(0))
    key = {"native_layer_norm": "layernorm", "layer_norm": "layernorm",
           "native_group_norm": "groupnorm", "group_norm": "groupnorm",
           "instance_norm": "instancenorm", "rms_norm": "rmsnorm", "_fused_rms_norm": "rmsnorm"}
    return [OPS.lower(key.get(c.name, "batchnorm"), n, n)]


#: aten names that reduce (with a dim or over everything) unless the overload is binary
_REDUCTIONS = {"mean": "reducemean", "sum": "reducesum", "prod": "reduceprod", "amax": "amax",
               "amin": "amin", "max": "reducemax", "min": "reducemin", "std": "std",
               "var": "var", "logsumexp": "logsumexp", "argmax": "argmax", "argmin": "argmin",
               "any": "any", "all": "all", "norm": "reducel2", "linalg_vector_norm": "reducel2",
               "std_mean": "std", "var_mean": "var", "nansum": "reducesum", "nanmean": "reducemean"}
_BINARY_OVERLOADS = {"other", "Tensor", "out", "Scalar"}


def _generic(c: Call):
    overload = c.qualified.rsplit(".", 1)[-1]
    if c.name in _REDUCTIONS and overload not in _BINARY_OVERLOADS:
        out = _first_tensor(c.out)
        return [OPS.lower(_REDUCTIONS[c.name], _numel(out) if out is not None else 1,
                          _numel(c.arg(0)))]
    out = _first_tensor(c.out)
    first = c.arg(0)
    in_elems = _numel(first) if isinstance(first, torch.Tensor) else None
    if isinstance(first, (list, tuple)):  # cat / stack take a list
        in_elems = sum(_numel(t) for t in first if isinstance(t, torch.Tensor))
    out_elems = _numel(out) if out is not None else 0
    if c.name.endswith("_") and out is None:
        out_elems = in_elems or 0
    return [OPS.lower(c.name, out_elems, in_elems)]


#: aten ops that are pure metadata and are not reported as nodes at all (they are not
#: operations of the model: device queries, shape reads, autograd detaches of parameters).
SILENT = {"device", "detach", "alias", "lift_fresh", "sym_size", "sym_numel", "sym_stride",
          "sym_storage_offset", "is_same_size", "_local_scalar_dense", "_assert_async",
          "_assert_scalar", "_functional_assert_async", "sym_constrain_range",
          "sym_constrain_range_for_size", "_assert_tensor_metadata", "set_", "resize_",
          "empty", "empty_strided", "empty_like", "_has_compatible_shallow_copy_type",
          "is_nonzero", "record_stream", "_version", "_make_dep_token", "profiler"}
