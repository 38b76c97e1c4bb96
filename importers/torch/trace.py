"""Step 2 of the PyTorch front end, the driver: run the model's forward under the
``Tracer`` on fake tensors (or, for a model on the meta device, meta tensors; or, for a
forward that depends on its data, one real pass when real inputs and weights are given),
with hooks that name each call after its module, and lower the records.

The model's state is untouched: its parameters are never read, its training flags are
restored, and hooks and patched forwards are removed.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from fodlam.errors import InputError, ModelError, UserCodeError, guard_user_code

from .inputs import (_dtype, check_rank, _fake_like, _has_real_inputs_and_weights, _looks_like_dtype_error,
                     _make_inputs, _real_inputs, _resolve_shapes, _tensors_in,
                     _wants_integer_input, weight_densities)
from .moe import MOE_ROUTING, _experts_params, _moe_layers
from .tracer import RNN_MODULES, Tracer, _record_rnn, lower_records

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
    if inputs is None:
        check_rank(model, shapes)
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
                    raise UserCodeError(f"tracing {type(model).__name__} with fake inputs of shape "
                                        f"{shapes or 'given'} failed: {type(e).__name__}: {msg}; "
                                        "check input_shape/dtype, or pass example inputs=") from None
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
    # the type of every module that holds a node, and of its ancestors (the module tree)
    used = set()
    for n in nodes:
        parts = (n.origin.get("module") or "").split(".")
        used.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0])
    types = {name: type(m).__name__ for name, m in model.named_modules() if name in used}
    if types:
        info["module_types"] = types
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
