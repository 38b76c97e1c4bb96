"""Step 2 of the PyTorch front end: the dispatch mode that records every aten call with
its argument and result shapes, the module path that issued it and its dataflow, and the
lowering of those records to ``Node``s through the ``ATEN`` table.

Recurrent modules (nn.LSTM / nn.GRU / nn.RNN) are recorded whole from their configuration,
because their aten decomposition differs between backends and time steps.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from fodlam import layers as L
from fodlam import ops as OPS
from fodlam.errors import LayerError, ModelError
from fodlam.nodes import Node

from .lowerings import ATEN, SILENT, _REDUCTIONS, Call, _first_tensor, _generic, _shape

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
        tensors = [a for a in (args if isinstance(args, (list, tuple)) else ())
                   if isinstance(a, torch.Tensor)]
        first = next((a for a in tensors if not tracer.is_weight(a)), tensors[0] if tensors else None)
        result = _first_tensor(out) if name not in ("__rnn__", "__moe__") else None
        if first is not None:
            origin["input_shape"] = list(_shape(first))
        if result is not None:
            origin["output_shape"] = list(_shape(result))
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
