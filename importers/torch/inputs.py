"""Step 1 of the PyTorch front end: what the forward is given and what the model holds.

Input shapes and dtypes, fake tensors in place of every parameter, buffer and input (same
shape, dtype and strides, no storage), real inputs found however nested, fake copies of
objects that hold real tensors (a user's KV cache), and the weight densities a sparse
engine reads (measured from the weights, or given).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

from fodlam.errors import InputError

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
        if isinstance(input_shape, torch.Tensor):
            raise InputError(f"input_shape is a torch.Tensor (of shape {tuple(input_shape.shape)}), "
                             "not a shape: give its shape, e.g. input_shape="
                             f"{tuple(input_shape.shape)}, or pass the tensor as inputs=")
        text = repr(input_shape)
        shown = text if len(text) <= 60 else f"a {type(input_shape).__name__}"
        raise InputError(f"input_shape {shown}: give a tuple of ints for one input, or "
                         "a sequence of tuples for several")
    for s in shapes:
        if not all(isinstance(d, int) and d > 0 for d in s):
            text = repr(s) if len(repr(s)) <= 60 else f"of {len(s)} dimensions"
            raise InputError(f"input shape {text}: every dimension must be a positive integer")
    if batch is not None:
        shapes = [(int(batch),) + tuple(s[1:]) if s else s for s in shapes]
    return shapes


def check_rank(model, shapes) -> None:
    """An input shape one dimension short of the first layer's batched input (the batch
    left out: 3,224,224 for a Conv2d) is a one-line error naming both, not an unbatched
    trace taking the channels for a batch."""
    if not shapes:
        return
    first = next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))),
                 None)
    dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}.get(type(first))
    if dims is None:
        return
    shape = shapes[0]
    if len(shape) == dims + 1 and shape[0] == first.in_channels:
        name = next((n for n, m in model.named_modules() if m is first), "?")
        axes = "N, C, " + ", ".join("DHW"[3 - dims:])
        raise InputError(f"input shape {tuple(shape)} has {len(shape)} dimensions, but the model's "
                         f"first layer {name} ({type(first).__name__}) takes {dims + 2} ({axes}): "
                         f"add the batch, e.g. --input-shape 1,{','.join(map(str, shape))}")


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
