"""PyTorch front end: trace a module with fake tensors, lower every aten op to canonical layers.

How it traces without running the model's arithmetic or materialising its weights:

* every parameter and buffer is replaced (``torch.func.functional_call``) by a *fake*
  tensor of the same shape, dtype and strides on the CPU (FakeTensorMode: no storage), so
  a model built on the ``meta`` device profiles like a real one;
* the forward runs under a dispatch mode that records each aten op with its argument and
  result shapes and the module path that issued it (forward pre/post hooks);
* recurrent modules (nn.LSTM / nn.GRU / nn.RNN) are lowered whole from their configuration,
  because their aten decomposition differs between backends and time steps;
* the model's state is untouched: its parameters are never read, its training flags are
  restored, and hooks are removed.

The lowering table ``ATEN`` maps an aten op name to a small function; ops missing from it
and from ``fodlam.ops`` become unmodeled nodes. Arithmetic lives in ``fodlam.layers``.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import math
from dataclasses import replace
import sys
from pathlib import Path
from typing import Callable

from fodlam import layers as L
from fodlam import ops as OPS
from fodlam.errors import FodlamError, InputError, LayerError, ModelError, UserCodeError, guard_user_code
from fodlam.nodes import Imported, Node

try:
    import torch
    from torch import nn
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError as e:  # pragma: no cover
    raise ImportError("the PyTorch importer needs torch: pip install 'fodlam[torch]'") from e


# --------------------------------------------------------------------------------------
# aten lowerings
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------

RNN_MODULES = (nn.LSTM, nn.GRU, nn.RNN)
WEIGHT_VIEWS = {"t", "transpose", "permute", "view", "reshape", "_unsafe_view", "_to_copy", "to",
                "dequantize", "clone", "contiguous", "expand", "unsqueeze", "squeeze", "detach",
                "alias", "select", "slice", "split", "split_with_sizes", "chunk", "unbind",
                "narrow", "as_strided", "unsafe_split", "unsafe_chunk", "numpy_T", "mT", "flatten",
                "_reshape_alias", "repeat_interleave", "index_select", "unflatten"}


class Tracer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.stack: list[tuple] = [("", "", 0, False)]  # (path, type, call id, leaf)
        self.calls = 0
        self.records: list[tuple] = []
        self.weights: set[int] = set()
        self._keep: list = []          # keep traced tensors alive so ids stay unique
        self.suppress = 0              # > 0 inside a module lowered whole (RNNs)
        self.origin: dict[int, str] = {}     # id of a weight tensor -> its parameter's name
        self.densities: dict[str, float] = {}  # parameter name -> non-zero fraction
        # dataflow: id of an activation tensor -> index of the record that produced it, and
        # record index -> the records its activation operands came from (fusion reads it)
        self.producer: dict[int, int] = {}
        self.record_inputs: dict[int, tuple[int, ...]] = {}
        self.rnn_open: list[int] = []          # records of recurrent modules still running
        self.fake = False                      # tracing under FakeTensorMode

    def _operands(self, args, kwargs) -> tuple[int, ...]:
        """Records that produced the activation tensors among ``args``/``kwargs``, in order,
        once each (weights have no producer)."""
        out: list[int] = []
        stack = list(args) + list(kwargs.values())
        while stack:
            a = stack.pop(0)
            if isinstance(a, (list, tuple)):
                stack[:0] = list(a)
            elif isinstance(a, torch.Tensor):
                src = self.producer.get(id(a))
                if src is not None and src not in out:
                    out.append(src)
        return tuple(out)

    def produced(self, out, index: int | None) -> None:
        """Mark every tensor of ``out`` as produced by record ``index`` (None: forget)."""
        for t in (out if isinstance(out, (list, tuple)) else [out]):
            if isinstance(t, torch.Tensor):
                if index is None:
                    self.producer.pop(id(t), None)
                else:
                    self.producer[id(t)] = index
                    self._keep.append(t)

    def add_record(self, record: tuple, args=(), kwargs=None, out=None) -> None:
        """Append a record with its dataflow: its operands' producers, and its outputs."""
        index = len(self.records)
        self.records.append(record)
        self.record_inputs[index] = self._operands(args, kwargs or {})
        self.produced(out, index)

    def mark_weight(self, t, name=None, like=None):
        self.weights.add(id(t))
        self._keep.append(t)
        source = name if name is not None else self.origin.get(id(like)) if like is not None else None
        if source is not None:
            self.origin[id(t)] = source

    def is_weight(self, t) -> bool:
        return isinstance(t, torch.Tensor) and id(t) in self.weights

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.fake:
            # a real tensor met in a fake trace is a constant of the model that is neither a
            # parameter nor a buffer (an anchor grid, a mask kept as a plain attribute): the
            # fake mode reads its shape and never its values; it is a weight, folded at load
            for a in itertools.chain(args, kwargs.values()):
                if isinstance(a, torch.Tensor) and not isinstance(a, FakeTensor) \
                        and id(a) not in self.weights and id(a) not in self.producer:
                    self.mark_weight(a)
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
        if self.suppress:
            return out
        # reshaping, transposing, slicing or casting a weight yields a weight; such
        # preprocessing of parameters is folded at load time and is not a model operation
        first = args[0] if args else None
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        derived = self.is_weight(first) and (name in WEIGHT_VIEWS or OPS.is_view(name))
        # an op computed only from weights (a pruning mask applied, weights scaled) is
        # weight preparation, folded at load time: its result is a weight too
        # (a pruning mask, weight norm's v * g / ||v||, exp of a log-scale): constant folding
        derived = derived or (bool(tensors) and all(self.is_weight(a) for a in tensors)
                              and not any(isinstance(a, torch.Tensor) and not self.is_weight(a)
                                          for v in kwargs.values()
                                          for a in (v if isinstance(v, (list, tuple)) else [v])))
        if derived:
            # name the result after the operand that is a parameter (weight_orig, not its
            # pruning mask) where one is
            like = next((a for a in tensors if self.origin.get(id(a)) in self.densities), first)
            for t in (out if isinstance(out, (list, tuple)) else [out]):
                if isinstance(t, torch.Tensor):
                    self.mark_weight(t, like=like)
            return out
        if name in SILENT or func.namespace == "prim":
            # an alias of its first operand: the same producer
            src = self.producer.get(id(first)) if isinstance(first, torch.Tensor) else None
            if src is not None:
                self.produced(out, src)
            return out
        self.add_record((name, str(func), args, kwargs, out, self.stack[-1]), args, kwargs, out)
        self._keep.append(out)
        return out


def _fake_like(t: torch.Tensor, requires_grad: bool = False, dtype=None) -> torch.Tensor:
    """A tensor of ``t``'s shape and strides with no data (under FakeTensorMode); a floating
    ``t`` takes ``dtype`` where one is given."""
    if dtype is None or not t.is_floating_point():
        dtype = t.dtype
    fake = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=dtype, device="cpu")
    if requires_grad and (fake.is_floating_point() or fake.is_complex()):
        fake.requires_grad_(True)
    return fake


def _resolve_shapes(input_shape, batch):
    if input_shape is None:
        return None
    if isinstance(input_shape, torch.Size) or (isinstance(input_shape, (tuple, list)) and
                                                all(isinstance(d, int) for d in input_shape)):
        shapes = [tuple(input_shape)]
    elif isinstance(input_shape, (tuple, list)) and all(isinstance(s, (tuple, list, torch.Size))
                                                         for s in input_shape):
        shapes = [tuple(s) for s in input_shape]
    else:
        raise InputError(f"input_shape {input_shape!r}: give a tuple of ints for one input, or "
                         "a sequence of tuples for several")
    for s in shapes:
        if not all(isinstance(d, int) and d > 0 for d in s):
            raise InputError(f"input shape {s}: every dimension must be a positive integer")
    if batch is not None:
        shapes = [(int(batch),) + tuple(s[1:]) if s else s for s in shapes]
    return shapes


def _wants_integer_input(model) -> bool:
    """Token models: the first module with parameters is an embedding."""
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return True
        if any(True for _ in module.parameters(recurse=False)):
            return False
    return False


def _dtype(spec):
    if spec is None or isinstance(spec, torch.dtype):
        return spec
    try:
        value = getattr(torch, str(spec).replace("torch.", ""))
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise InputError(f"dtype {spec!r} is not a torch dtype (e.g. float32, int64)")
    return value


MOE_ROUTING = ("balanced", "concentrated")


def _experts_params(module) -> list:
    """The stacked expert weights of a mixture-of-experts module (``transformers``' experts
    classes, whatever implementation they dispatch to): direct 3-D parameters whose leading
    dimension is ``module.num_experts``."""
    e = getattr(module, "num_experts", None)
    if not isinstance(e, int) or e < 1:
        return []
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p.dim() == 3 and p.shape[0] == e]


def _tokens_per_expert(tokens: int, k: int, experts: int, routing: str) -> list[int]:
    """Rows each expert multiplies. balanced: the tokens x k assignments spread evenly over
    the experts; concentrated: every token picks the same k experts (the fewest expert
    weights touched)."""
    if routing == "concentrated":
        return [tokens] * min(k, experts)
    total = tokens * k
    return [total // experts + (1 if i < total % experts else 0) for i in range(experts)]


def _moe_layers(module, hidden, top_k_index, routing: str):
    tokens = int(math.prod(_shape(hidden)[:-1]))
    k = int(_shape(top_k_index)[-1]) if isinstance(top_k_index, torch.Tensor) and top_k_index.dim() else 1
    params = _experts_params(module)
    experts = params[0][1].shape[0]
    transposed = bool(getattr(module, "is_transposed", False))
    layers = []
    for n_e in _tokens_per_expert(tokens, k, experts, routing):
        if not n_e:
            continue
        for _, w in params:
            _, a, b = _shape(w)
            layers.append(L.fc(n_e, a, b) if transposed else L.fc(n_e, b, a))
    assigned = tokens * k if routing == "balanced" else tokens * min(k, experts)
    inter = min(min(_shape(w)[1:]) for _, w in params)
    hidden_dim = _shape(hidden)[-1]
    layers += [OPS.lower("silu", assigned * inter), OPS.lower("mul", assigned * inter),
               OPS.lower("mul", assigned * hidden_dim), OPS.lower("add", assigned * hidden_dim)]
    note = (f"mixture of {experts} experts, top-{k} of {tokens} tokens, routing '{routing}': "
            + ("each expert gets tokens x k / experts rows" if routing == "balanced"
               else f"all tokens go to the same {min(k, experts)} experts")
            + " (fodlam.profile(..., moe_routing=...))")
    return layers, note


def weight_densities(model, spec) -> dict[str, float]:
    """Non-zero fraction per parameter name: ``"measure"`` reads the real parameters (a
    pruned weight, ``torch.nn.utils.prune``, counts with its mask applied), a number applies
    to every weight, a mapping names modules (``{"classifier.1": 0.1}``)."""
    if spec is None:
        return {}
    names = [n for n, _ in model.named_parameters()]
    if isinstance(spec, str):
        if spec != "measure":
            raise InputError(f"weight_density must be 'measure', a number or a mapping, not {spec!r}")
        out = {}
        buffers = dict(model.named_buffers())
        for name, p in model.named_parameters():
            if p.device.type == "meta" or isinstance(p, torch.nn.parameter.UninitializedParameter):
                raise InputError("weight_density='measure' reads the weights, but this model has none "
                                 "(meta device); give a number or a per-module mapping instead")
            t = p.detach()
            if name.endswith("_orig") and name[:-5] + "_mask" in buffers:
                t = t * buffers[name[:-5] + "_mask"]
            out[name] = float(torch.count_nonzero(t)) / max(1, t.numel())
        return out
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not 0 < spec <= 1:
            raise InputError(f"weight_density must be in (0, 1], got {spec}")
        return {n: float(spec) for n in names}
    if isinstance(spec, dict):
        out = {}
        for module, d in spec.items():
            if not isinstance(d, (int, float)) or not 0 < d <= 1:
                raise InputError(f"weight_density for '{module}' must be in (0, 1], got {d!r}")
            hit = [n for n in names if n.rsplit(".", 1)[0] == module]
            if not hit:
                raise InputError(f"weight_density names module '{module}', which has no parameters; "
                                 "use the module paths of model.named_modules()")
            out.update({n: float(d) for n in hit})
        return out
    raise InputError("weight_density must be 'measure', a number in (0, 1] or a {module: density} mapping")


def trace(model, input_shape=None, *, batch=None, dtype=None, inputs=None, moe_routing="balanced",
          weight_density=None, _fake_mode=None, _outputs=None, **forward_kwargs):
    """(nodes, info, batch): the lowered nodes, the network's description and the batch
    they were lowered at. Runs the forward on fake tensors only (or, for a forward that
    depends on its data, one real pass when real inputs and weights are given).
    ``_fake_mode``: trace in this FakeTensorMode (successive traces that hand each other
    fake tensors, e.g. a KV cache, share one); ``_outputs``: a list the forward's return
    value is appended to."""
    if moe_routing not in MOE_ROUTING:
        raise InputError(f"moe_routing must be one of {', '.join(MOE_ROUTING)}, not {moe_routing!r}")
    densities = weight_densities(model, weight_density) if isinstance(model, nn.Module) else {}
    if not isinstance(model, nn.Module):
        raise InputError(f"fodlam.profile needs a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(f"{type(model).__name__} is a TorchScript module, which FODLAM cannot trace; "
                         "pass the eager nn.Module you scripted (or export it to ONNX)")
    shapes = _resolve_shapes(input_shape, batch)
    if shapes is None and inputs is None:
        raise InputError("give input_shape (e.g. (1, 3, 224, 224)) or example inputs=")
    dtype = _dtype(dtype)
    # a floating dtype is the one the model is traced in: its floating parameters and
    # inputs take it (so its MAC layers take that width); a token model's ids stay integers
    float_dtype = dtype if dtype is not None and dtype.is_floating_point else None

    # real tensors the forward meets that are not parameters or buffers (plain attributes)
    # are converted to fakes by shape: no arithmetic runs on them
    fake_mode = _fake_mode or FakeTensorMode(allow_non_fake_inputs=True)
    if _has_script_objects(model):
        # FakeTensorMode's dispatch cache is shared by every instance and compares its keys
        # with ==, which TorchScript objects (quantized packed weights) do not implement: a
        # second profile of the same quantized model would fail on a cache hit
        fake_mode.cache_enabled = False
    tracer = Tracer()
    tracer.fake = True
    path = "fake tensors (no arithmetic run)"
    flags = {m: m.training for m in model.modules()}
    hooks = []
    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}

    def pre(module, _args, _kwargs=None):
        tracer.calls += 1
        leaf = next(module.children(), None) is None
        tracer.stack.append((names.get(module, "?"), type(module).__name__, tracer.calls, leaf))
        if isinstance(module, RNN_MODULES):
            if tracer.suppress == 0:
                _record_rnn(tracer, module, _args, _kwargs)
            tracer.suppress += 1

    def post(module, _args, _out):
        if isinstance(module, RNN_MODULES):
            tracer.suppress -= 1
            if tracer.suppress == 0 and tracer.rnn_open:
                tracer.produced(_out, tracer.rnn_open.pop())
        tracer.stack.pop()

    def experts_forward(module):
        # routed expert computation as the weight GEMMs it is: lowered whole, whatever
        # implementation (loop over experts, batched, grouped_mm) the module would dispatch to
        def forward(hidden_states, top_k_index=None, top_k_weights=None, *args, **kwargs):
            if tracer.suppress == 0:
                layers, note = _moe_layers(module, hidden_states, top_k_index, moe_routing)
                index = len(tracer.records)
                tracer.add_record(("__moe__", f"experts:{type(module).__name__}", layers,
                                   {"note": note}, None, tracer.stack[-1]), (hidden_states,))
            else:
                index = None
            tracer.suppress += 1
            try:
                result = torch.zeros_like(hidden_states)
            finally:
                tracer.suppress -= 1
            if index is not None:
                tracer.produced(result, index)
            return result
        return forward

    patched = [m for m in model.modules() if _experts_params(m)]
    try:
        model.eval()
        for m in patched:
            m.forward = experts_forward(m)
        for m in model.modules():
            hooks.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            hooks.append(m.register_forward_hook(post, always_call=True))
        lazy = [name for name, p in model.named_parameters(remove_duplicate=False)
                if isinstance(p, torch.nn.parameter.UninitializedParameter)]
        if lazy:
            raise InputError(f"{type(model).__name__} has uninitialised (lazy) parameters "
                             f"({', '.join(lazy[:3])}); run one forward pass, or build the "
                             "model with explicit sizes, before profiling it")
        done = False
        if _meta_traceable(model, shapes, inputs, forward_kwargs, float_dtype):
            # the model is on the meta device: meta tensors already carry shapes and no data,
            # and trace faster than fakes (no FakeTensorMode); any failure falls back to fakes
            tracer.fake = False              # every tensor is a meta tensor: none is a constant
            for name, p in model.named_parameters():
                tracer.mark_weight(p, name)
            for name, b in model.named_buffers():
                tracer.mark_weight(b, name)
            tracer.densities = densities
            try:
                result = guard_user_code(f"{type(model).__name__}.forward", _meta_forward,
                                         model, tracer, _meta_inputs(model, shapes, dtype),
                                         forward_kwargs)
                if _outputs is not None:
                    _outputs.append(result)
                done = True
                path = "meta tensors (the model is on the meta device; no arithmetic run)"
            except UserCodeError:
                raise
            except Exception:  # noqa: BLE001 - the fake path below reports any real failure
                tracer = Tracer()
                tracer.fake = True
        if not done:
            with fake_mode:
                # one fake per tensor: a tied or shared parameter (an LM head tied to its
                # embedding) is passed once, and functional_call ties it everywhere it is used
                state = {}
                for name, p in model.named_parameters():
                    state[name] = _fake_like(p, requires_grad=True, dtype=float_dtype)
                    tracer.mark_weight(state[name], name)
                for name, b in model.named_buffers():
                    state[name] = _fake_like(b, dtype=float_dtype)
                    tracer.mark_weight(state[name], name)
                args, kwargs = _make_inputs(model, shapes, dtype, inputs, forward_kwargs,
                                            fake_mode)
            tracer.densities = densities
            import logging
            fake_log = logging.getLogger("torch._subclasses.fake_tensor")
            level = fake_log.level
            fake_log.setLevel(logging.CRITICAL)  # a failing forward is reported once, by us
            try:
                with fake_mode, tracer:
                    result = guard_user_code(f"{type(model).__name__}.forward",
                                             torch.func.functional_call, model, state, args,
                                             kwargs, strict=False)
                if _outputs is not None:
                    _outputs.append(result)
            except UserCodeError:
                raise
            except Exception as e:  # noqa: BLE001 - report any failure of the user's forward
                if _data_dependent(e):
                    why = " ".join(str(e).split())[:160]
                    if not _has_real_inputs_and_weights(model, inputs, forward_kwargs):
                        raise ModelError(
                            f"{type(model).__name__}'s forward depends on the values of its data "
                            f"({type(e).__name__}: {why}), which tracing with fake tensors cannot "
                            "follow; pass real example inputs= (real tensors, and a model with real "
                            "weights, not on the meta device) and FODLAM records one real forward "
                            "pass instead") from None
                    tracer = Tracer()
                    tracer.densities = densities
                    real_args, real_kwargs = _real_inputs(inputs, forward_kwargs)
                    for name, p in model.named_parameters():
                        tracer.mark_weight(p, name)
                    for name, b in model.named_buffers():
                        tracer.mark_weight(b, name)
                    with torch.no_grad(), tracer:
                        guard_user_code(f"{type(model).__name__}.forward", model, *real_args, **real_kwargs)
                    path = f"real forward pass (the forward depends on its data: {type(e).__name__})"
                    e = None
                if e is None:
                    pass
                elif shapes is not None and dtype is None and inputs is None and _looks_like_dtype_error(e):
                    return trace(model, input_shape, batch=batch,
                                 dtype=torch.float32 if _wants_integer_input(model) else torch.int64,
                                 inputs=None, moe_routing=moe_routing, weight_density=weight_density,
                                 **forward_kwargs)
                else:
                    msg = " ".join(str(e).split())[:300]
                    raise ModelError(f"tracing {type(model).__name__} with fake inputs of shape "
                                     f"{shapes or 'given'} failed: {type(e).__name__}: {msg}; check "
                                     "input_shape/dtype, or pass example inputs=") from None
            finally:
                fake_log.setLevel(level)
    finally:
        for h in hooks:
            h.remove()
        for m in patched:
            m.__dict__.pop("forward", None)
        for m, flag in flags.items():
            m.training = flag
    nodes = lower_records(tracer)
    info = {"name": type(model).__name__, "format": "torch",
            "inputs": [list(s) for s in shapes] if shapes else "inputs=", "trace": path}
    first = shapes[0] if shapes else None
    resolved_batch = batch if batch is not None else (first[0] if first else 1)
    return nodes, info, resolved_batch


def _meta_traceable(model, shapes, inputs, forward_kwargs, float_dtype) -> bool:
    """Every parameter and buffer on the meta device, inputs given by shape, no dtype to
    impose and no tensor among the forward's keyword arguments: trace on meta tensors."""
    if shapes is None or inputs is not None or float_dtype is not None:
        return False
    if any(isinstance(v, torch.Tensor) for v in _tensors_in(forward_kwargs)):
        return False
    tensors = itertools.chain(model.parameters(), model.buffers())
    first = next(tensors, None)
    return first is not None and first.device.type == "meta" and all(
        t.device.type == "meta" for t in tensors)


def _meta_inputs(model, shapes, dtype):
    if dtype is None:
        dtype = torch.int64 if _wants_integer_input(model) else torch.float32
    return tuple(torch.zeros(s, dtype=dtype, device="meta") for s in shapes)


def _meta_forward(model, tracer, args, kwargs):
    with torch.no_grad(), _CpuAttentionOnMeta(), tracer:
        return model(*args, **kwargs)


class _CpuAttentionOnMeta(torch.overrides.TorchFunctionMode):
    """On meta tensors PyTorch decomposes scaled-dot-product attention into its math ops,
    where on a CPU (the fake path) it dispatches the fused kernel: call that kernel here, so
    a model on the meta device lowers to the same nodes as the same model with weights."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention or \
                getattr(func, "__name__", "") == "scaled_dot_product_attention":
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
                     "enable_gqa")
            bound = dict(zip(names, args))
            bound.update(kwargs)
            q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
            mask = bound.get("attn_mask")
            if all(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in (q, k, v)) \
                    and q.dim() == 4 and not bound.get("dropout_p") \
                    and (mask is None or mask.is_floating_point()):
                # grouped-query attention (fewer key/value heads) goes to the kernel as it is
                if not (q.shape[-3] == k.shape[-3] == v.shape[-3] or bound.get("enable_gqa")):
                    return func(*args, **kwargs)
                return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q, k, v, 0.0, bool(bound.get("is_causal", False)), attn_mask=mask,
                    scale=bound.get("scale"))[0]
        return func(*args, **kwargs)


def _has_script_objects(model) -> bool:
    """True when a module holds a TorchScript object (dynamically quantized Linear's packed
    parameters)."""
    script = getattr(torch, "ScriptObject", None) or torch._C.ScriptObject
    return any(isinstance(v, script) for m in model.modules() for v in vars(m).values())


def _data_dependent(e: BaseException) -> bool:
    """A fake trace stopped because the forward needs the values of its data (nonzero,
    boolean masks, ``if x.sum() > 0``, .item())."""
    names = {"DynamicOutputShapeException", "DataDependentOutputException",
             "GuardOnDataDependentSymNode", "UnsupportedOperatorException"}
    for cls in type(e).__mro__:
        if cls.__name__ in names:
            return cls.__name__ != "UnsupportedOperatorException" or "nonzero" in str(e)
    text = str(e)
    return "data-dependent" in text or "DynamicOutputShape" in text or "data dependent" in text


def _is_real(t) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor
    return isinstance(t, torch.Tensor) and not isinstance(t, FakeTensor) and t.device.type != "meta"


def _has_real_inputs_and_weights(model, inputs, forward_kwargs) -> bool:
    if inputs is None:
        return False
    tensors = list(_tensors_in(inputs)) + list(_tensors_in(forward_kwargs))
    return bool(tensors) and all(_is_real(t) for t in tensors) and all(
        _is_real(p) for p in itertools.chain(model.parameters(), model.buffers()))


def _tensors_in(value, depth: int = 0):
    """Every tensor in a value, however nested in lists, tuples and dicts (a detector's list
    of images, a multimodal model's dict of inputs)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 8 and isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors_in(v, depth + 1)
    elif depth < 8 and isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v, depth + 1)


def _real_inputs(inputs, forward_kwargs):
    kwargs = dict(forward_kwargs)
    if isinstance(inputs, dict):
        kwargs.update(inputs)
        return (), kwargs
    if isinstance(inputs, torch.Tensor):
        return (inputs,), kwargs
    return tuple(inputs), kwargs


def _looks_like_dtype_error(e) -> bool:
    text = str(e)
    return any(s in text for s in ("scalar type", "Long, Int", "expected scalar type",
                                   "indices", "Expected tensor for argument"))


def _make_inputs(model, shapes, dtype, inputs, forward_kwargs, fake_mode=None):
    def fake(t):
        if isinstance(t, torch.Tensor):
            return t if isinstance(t, FakeTensor) else _fake_like(t)
        if isinstance(t, (list, tuple)):
            return type(t)(fake(x) for x in t)
        if isinstance(t, dict):
            return {k: fake(v) for k, v in t.items()}
        if fake_mode is not None and _holds_real_tensors(t):
            return _fake_copy(t, fake_mode)
        return t

    kwargs = {k: fake(v) for k, v in forward_kwargs.items()}
    if inputs is not None:
        if isinstance(inputs, dict):
            kwargs.update(fake(inputs))
            return (), kwargs
        if isinstance(inputs, torch.Tensor):
            return (fake(inputs),), kwargs
        return tuple(fake(x) for x in inputs), kwargs
    if dtype is None or (dtype.is_floating_point and _wants_integer_input(model)):
        dtype = torch.int64 if _wants_integer_input(model) else torch.float32
    if dtype.is_floating_point or dtype.is_complex:
        return tuple(torch.empty(s, dtype=dtype) for s in shapes), kwargs
    return tuple(torch.zeros(s, dtype=dtype) for s in shapes), kwargs


def _object_tensors(obj, depth: int = 0, seen=None):
    """The tensors an object holds in its attributes, lists, tuples and dicts (a KV cache's
    per-layer keys and values), depth-limited."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _object_tensors(v, depth + 1, seen)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _object_tensors(v, depth + 1, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (nn.Module, type)):
        for v in vars(obj).values():
            yield from _object_tensors(v, depth + 1, seen)


def _holds_real_tensors(obj) -> bool:
    return not isinstance(obj, (str, bytes, int, float, bool, type(None), torch.dtype)) and any(
        not isinstance(t, FakeTensor) for t in _object_tensors(obj))


def _fake_copy(obj, fake_mode):
    """A copy of an object holding real tensors (a user's KV cache) with every tensor
    replaced by a fake of its shape: the trace may update the copy (a cache appends the
    new keys and values), never the user's object, and no data is copied."""
    import copy

    memo = {}
    with fake_mode:
        for t in _object_tensors(obj):
            if not isinstance(t, FakeTensor) and id(t) not in memo:
                memo[id(t)] = _fake_like(t)
    return copy.deepcopy(obj, memo)


def _record_rnn(tracer: Tracer, module, args, kwargs):
    x = args[0] if args else (kwargs or {}).get("input")
    if hasattr(x, "data") and type(x).__name__ == "PackedSequence":
        raise ModelError("PackedSequence inputs are not supported; profile with a padded tensor")
    if not isinstance(x, torch.Tensor):
        return
    shape = _shape(x)
    if len(shape) == 2:  # unbatched (seq, features)
        seq, batch = shape[0], 1
    elif module.batch_first:
        batch, seq = shape[0], shape[1]
    else:
        seq, batch = shape[0], shape[1]
    cell = {nn.LSTM: "lstm", nn.GRU: "gru"}.get(type(module), None)
    if cell is None:
        cell = next((k for k, v in (("lstm", nn.LSTM), ("gru", nn.GRU)) if isinstance(module, v)), "rnn")
    dirs = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0) or 0
    out_per_dir = proj or module.hidden_size
    layers = []
    for i in range(module.num_layers):
        inp = module.input_size if i == 0 else out_per_dir * dirs
        layers.append(L.recurrent(cell, seq, batch, inp, module.hidden_size, dirs, proj))
    tracer.rnn_open.append(len(tracer.records))
    tracer.add_record(("__rnn__", f"nn.{type(module).__name__}", layers, {}, None,
                       tracer.stack[-1]), args, kwargs)


def lower_records(tracer: Tracer) -> list[Node]:
    nodes = []
    counts: dict[str, int] = {}
    named_calls: set[int] = set()
    names: list[str] = []
    for index, (name, qualified, args, kwargs, out, (path, mtype, call_id, leaf)) in \
            enumerate(tracer.records):
        if len(nodes) > len(names):
            names.append(nodes[-1].name)
        inputs = tuple(names[i] for i in tracer.record_inputs.get(index, ()) if i < len(names))
        if name in ("__rnn__", "__moe__") or (leaf and path and call_id not in named_calls):
            base = path or qualified
            named_calls.add(call_id)
        else:
            base = f"{path}/{name}" if path else name
        n = counts.get(base, 0)
        counts[base] = n + 1
        node_name = base if n == 0 else f"{base}#{n}"
        origin = {"module": path, "module_type": mtype, "aten": qualified}
        if name == "__rnn__":
            nodes.append(Node(node_name, qualified, tuple(args), origin, inputs=inputs))
            continue
        if name == "__moe__":
            origin["routing"] = kwargs["note"]
            nodes.append(Node(node_name, qualified, tuple(args), origin, note=kwargs["note"],
                              inputs=inputs))
            continue
        namespace = qualified.split(".", 1)[0]
        fn = ATEN.get(f"{namespace}::{name}") if namespace not in ("aten", "") else None
        fn = fn or ATEN.get(name)
        call = Call(name, args, kwargs, out, tracer, qualified)
        try:
            if fn is not None:
                layers = fn(call)
            elif OPS.known(name) or name in _REDUCTIONS:
                layers = _generic(call)
            else:
                nodes.append(Node(node_name, qualified, (), origin, modeled=False, inputs=inputs))
                continue
        except LayerError as e:
            raise ModelError(f"{node_name} ({qualified}): {e}") from None
        bits = _dtype_bits(next((a for a in args if isinstance(a, torch.Tensor)), None))
        if bits:
            layers = [replace(x, bits=bits) if x.macs and x.bits is None and not
                      isinstance(x, L.Counted) else x for x in layers]
        nodes.append(Node(node_name, qualified, tuple(layers), origin, inputs=inputs))
    return nodes


def _dtype_bits(t) -> int | None:
    """Width of a tensor's elements: what a MAC layer's operands are (fp32 32, bf16 and
    fp16 16, int8 and fp8 8)."""
    if not isinstance(t, torch.Tensor):
        return None
    dtype = t.dtype
    if dtype.is_complex or dtype == torch.bool:
        return None
    return dtype.itemsize * 8 if hasattr(dtype, "itemsize") else None


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------

def import_module(model, input_shape=None, *, batch=None, dtype=None, inputs=None,
                  moe_routing="balanced", weight_density=None, **forward_kwargs) -> Imported:
    """The lowered nodes of a PyTorch module (see ``trace``), as data: no cost."""
    nodes, info, resolved_batch = trace(model, input_shape, batch=batch, dtype=dtype,
                                        inputs=inputs, moe_routing=moe_routing,
                                        weight_density=weight_density, **forward_kwargs)
    return Imported(nodes=nodes, network=info, batch=resolved_batch)


def import_steps(model, steps, *, dtype=None, moe_routing="balanced", weight_density=None,
                 probe=None):
    """Trace several forwards of one model that hand each other tensors (a prefill and the
    decode steps reading its KV cache), in one fake mode: ``steps`` is a list of
    ``(input_shape, forward_kwargs or a function of the previous step's output returning
    them)``. Returns ``[(Imported, output, probe(output))]``: ``probe`` looks at each output
    before the next step may change it (a cache grows in place)."""
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    out, previous = [], None
    for shape, kwargs in steps:
        if callable(kwargs):
            kwargs = kwargs(previous)
        outputs: list = []
        kwargs = dict(kwargs)
        inputs = kwargs.pop("inputs", None)
        imported = import_module(model, shape, dtype=dtype, inputs=inputs, moe_routing=moe_routing,
                                 weight_density=weight_density, _fake_mode=fake_mode,
                                 _outputs=outputs, **kwargs)
        previous = outputs[0] if outputs else None
        out.append((imported, previous, probe(previous) if probe else None))
    return out


def load_factory(spec: str):
    """``package.module:factory`` or ``path/to/file.py:factory`` -> the callable.

    Importing user code runs it: only point this at code you trust (as with any import).
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"'{spec}': expected PACKAGE.MODULE:FACTORY or path/to/file.py:FACTORY")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise InputError(f"'{module_name}' not found")
            # a private module name per file: two model files of the same name (models.py in
            # two folders) never shadow each other or a real module called that
            import hashlib
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            name = f"_fodlam_user_{path.stem}_{digest}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module     # dataclasses in the file look themselves up here
            guard_user_code(f"importing '{module_name}'", mod_spec.loader.exec_module, module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = guard_user_code(f"importing '{module_name}'", importlib.import_module, module_name)
    except FodlamError:
        raise
    except ImportError as e:
        raise InputError(f"cannot import '{module_name}': {e}") from None
    except Exception as e:  # noqa: BLE001 - user code failed at import
        raise InputError(f"importing '{module_name}' failed: {type(e).__name__}: {e}") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise InputError(f"'{module_name}' has no attribute '{attr}'") from None
    return factory


def build_factory(spec: str):
    """The module a ``MODULE:FACTORY`` (or ``FILE.py:FACTORY``) reference builds."""
    factory = load_factory(spec)
    try:
        model = guard_user_code(f"{spec}()", factory) if not isinstance(factory, nn.Module) else factory
    except FodlamError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InputError(f"calling {spec}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def import_factory(spec: str, shapes, *, batch=None, dtype=None) -> Imported:
    """The lowered nodes of the module ``spec`` builds, at ``shapes`` (one per input)."""
    model = build_factory(spec)
    if not shapes:
        raise InputError("give at least one --input-shape, e.g. --input-shape 1,3,224,224")
    shapes = [tuple(s) for s in shapes]
    imported = import_module(model, shapes if len(shapes) > 1 else shapes[0], batch=batch,
                             dtype=dtype)
    imported.network["name"] = spec
    imported.network["source"] = spec
    return imported
