"""ONNX front end: load (no external data), infer shapes, lower each node to canonical layers.

The lowering table ``LOWERINGS`` maps (domain, op_type) to a small function; an op absent
from it becomes an *unmodeled* node (reported, never dropped). The arithmetic lives in
``fodlam.layers`` and ``fodlam.ops``; this file only reads ONNX attributes and shapes.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from fodlam import layers as L
from fodlam import ops as OPS
from fodlam.errors import InputError, LayerError, ModelError
from fodlam.nodes import Node

try:  # imported lazily by fodlam.api; never at fodlam import time
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover
    raise ImportError("the ONNX importer needs onnx: pip install 'fodlam[onnx]'") from e

#: Initializers with more elements than this are weights: shape inference sees only their
#: shapes (as graph inputs), so weights are never copied. Smaller ones keep their values
#: (reshape targets, axes, scales...).
SMALL_CONSTANT = 1024
#: the largest dimension and tensor FODLAM accepts (2^40 elements is ~4 TB of fp32)
MAX_DIM = 1 << 40
MAX_ELEMENTS = 1 << 40
MAX_SUBGRAPH_DEPTH = 32

Lowering = Callable[["Ctx"], "list[L.Layer] | tuple"]
LOWERINGS: dict[tuple[str, str], Lowering] = {}
MS = "com.microsoft"


def lowering(*op_types: str, domain: str = ""):
    def register(fn):
        for op in op_types:
            LOWERINGS[domain, op] = fn
        return fn
    return register


class UnknownDim(ModelError):
    def __init__(self, message, symbol=None):
        super().__init__(message)
        self.symbol = symbol


class _Corrupt(Exception):
    pass


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def _check_external_data(model, folder: Path) -> list[str]:
    """We never read external data (weights are not needed), but a location that escapes
    the model's folder is reported so nobody is misled about the file."""
    warnings = []
    root = folder.resolve()
    for graph in _graphs(model.graph):
        for init in graph.initializer:
            if init.data_location != TensorProto.EXTERNAL:
                continue
            loc = next((e.value for e in init.external_data if e.key == "location"), "")
            target = (root / loc).resolve() if loc else root
            if os.path.isabs(loc) or (root not in target.parents and target != root):
                warnings.append(f"initializer '{init.name}' points at external data '{loc}' "
                                "outside the model's folder; it was not read")
    return warnings


# ---- a structure-only reader: graph and tensor headers, no weight payloads ---------------

def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf, pos: int, end: int):
    """(field number, wire type, start of field, start of payload, end of field)."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            payload = pos
            _, pos = _varint(buf, pos, end)
            yield field, wire, start, payload, pos
            continue
        if wire == 1:
            payload, pos = pos, pos + 8
        elif wire == 5:
            payload, pos = pos, pos + 4
        elif wire == 2:
            length, payload = _varint(buf, pos, end)
            pos = payload + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of its message")
        yield field, wire, start, payload, pos


_TENSOR_PAYLOAD_FIELDS = {4, 5, 6, 7, 9, 10, 11}   # float/int32/string/int64/raw/double/uint64 data
_TENSOR_DIMS = 1


def _tensor_header(buf, start: int, end: int) -> bytes:
    """A TensorProto without its data when it holds more than SMALL_CONSTANT elements."""
    numel, has_dims = 1, False
    for field, wire, _s, payload, stop in _fields(buf, start, end):
        if field == _TENSOR_DIMS:
            has_dims = True
            if wire == 0:
                numel *= _varint(buf, payload, stop)[0]
            elif wire == 2:
                pos = payload
                while pos < stop:
                    d, pos = _varint(buf, pos, stop)
                    numel *= d
    if not has_dims or numel <= SMALL_CONSTANT:
        return bytes(buf[start:end])
    out = bytearray()
    for field, wire, s, payload, stop in _fields(buf, start, end):
        if field == _TENSOR_DIMS and wire == 0:
            out += buf[s:stop]
        elif field not in _TENSOR_PAYLOAD_FIELDS:
            out += buf[s:stop]
    # mark as "data elsewhere" so nothing mistakes the header for an empty tensor
    out += _enc_varint((14 << 3) | 0) + _enc_varint(TensorProto.EXTERNAL)
    return bytes(out)


def _structure_bytes(buf) -> bytes:
    """ModelProto bytes with large initializer payloads of the main graph left out."""
    end = len(buf)
    out = bytearray()
    for field, wire, s, payload, stop in _fields(buf, 0, end):
        if field == 7 and wire == 2:  # ModelProto.graph
            graph = bytearray()
            for gf, gw, gs, gp, ge in _fields(buf, payload, stop):
                if gf == 5 and gw == 2:  # GraphProto.initializer
                    t = _tensor_header(buf, gp, ge)
                    graph += _enc_varint((5 << 3) | 2) + _enc_varint(len(t)) + t
                else:
                    graph += buf[gs:ge]
            out += _enc_varint((7 << 3) | 2) + _enc_varint(len(graph)) + graph
        else:
            out += buf[s:stop]
    return bytes(out)


class _FileView:
    """Random access to a file through a few cached 64 KiB blocks: the scanner reads the
    graph and tensor headers and seeks over weight payloads, so a large model costs a few
    blocks of memory, not its size (a memory map would make every touched page resident)."""

    BLOCK = 1 << 16
    KEEP = 32

    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        self.cache: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.size

    def _block(self, index: int) -> bytes:
        data = self.cache.get(index)
        if data is None:
            self.f.seek(index * self.BLOCK)
            data = self.f.read(self.BLOCK)
            if len(self.cache) >= self.KEEP:
                self.cache.pop(next(iter(self.cache)))
            self.cache[index] = data
        return data

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop = key.start or 0, min(key.stop if key.stop is not None else self.size, self.size)
            if stop <= start:
                return b""
            first, last = start // self.BLOCK, (stop - 1) // self.BLOCK
            if last - first > 4:  # a long run (a node with a big constant): read it directly
                self.f.seek(start)
                return self.f.read(stop - start)
            data = b"".join(self._block(b) for b in range(first, last + 1))
            offset = first * self.BLOCK
            return data[start - offset:stop - offset]
        if key < 0 or key >= self.size:
            raise IndexError(key)
        return self._block(key // self.BLOCK)[key % self.BLOCK]


def load_structure(path) -> "onnx.ModelProto":
    """The model without its weights' payloads (shapes, names and small constants kept):
    large models cost little time and memory."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = _structure_bytes(_FileView(f, size))
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


def load(path) -> "onnx.ModelProto":
    p = Path(path)
    if not p.exists():
        raise InputError(f"model file {path} not found")
    if p.is_dir():
        raise InputError(f"{path} is a directory; give the .onnx file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if size == 0:
        raise ModelError(f"{path} is empty; it is not an ONNX model")
    try:
        try:
            model = load_structure(p)
        except (ValueError, IndexError, OverflowError):
            raise _Corrupt() from None
    except PermissionError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except MemoryError:
        raise
    except Exception as e:  # DecodeError, RuntimeWarning from protobuf, ...
        why = "malformed protobuf" if isinstance(e, _Corrupt) else type(e).__name__
        raise ModelError(f"{path} is not an ONNX model or is truncated/corrupt "
                         f"({why}); re-export it or check the download") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{path} holds no ONNX graph (is it an ONNX file? empty graph?)")
    return model


def _graphs(graph, depth=0):
    yield graph
    if depth > MAX_SUBGRAPH_DEPTH:
        raise ModelError(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} levels")
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, depth + 1)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g, depth + 1)


def _dims_of(vi) -> tuple | None:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _set_dims(vi, dims) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d:
            dim.dim_param = str(d)


# --------------------------------------------------------------------------------------
# The import proper
# --------------------------------------------------------------------------------------

class Graph:
    """A loaded model with every tensor's shape, static (weight) names and small values."""

    def __init__(self, model, *, input_shapes=None, dims=None, batch=None, source=""):
        self.model = model
        self.source = source
        self.warnings: list[str] = []
        self.dims = dict(dims or {})
        self.input_shapes = dict(input_shapes or {})
        self.batch = batch
        self.opset = {(o.domain or ""): o.version for o in model.opset_import}
        self.static: set[str] = set()
        self.meta: set[str] = set()   # computed from shapes (Shape/Size) and constants only
        self.values: dict[str, object] = {}
        self.shapes: dict[str, tuple] = {}
        self.dtypes: dict[str, int] = {}
        self._prepare()

    # -- preparation: bind user dims, hide weights from shape inference, infer shapes --
    def _prepare(self):
        model = self.model
        g = model.graph
        init_names = {i.name for i in g.initializer}
        graph_inputs = [vi for vi in g.input if vi.name not in init_names]
        known_inputs = {vi.name for vi in graph_inputs}
        for name in self.input_shapes:
            if name not in known_inputs:
                raise InputError(f"--input-shape {name}: the model has no input '{name}'; its "
                                 f"inputs are {', '.join(sorted(known_inputs)) or 'none'}")
        symbols = set()
        for vi in graph_inputs:
            dims = _dims_of(vi)
            if vi.name in self.input_shapes:
                new = tuple(self.input_shapes[vi.name])
                if dims is not None and len(dims) != len(new):
                    raise InputError(f"--input-shape {vi.name}: the model's input has rank "
                                     f"{len(dims)} ({_fmt_shape(dims)}), you gave {len(new)} dims")
                if dims is not None:
                    for d, v in zip(dims, new):
                        if isinstance(d, str):
                            self.dims.setdefault(d, v)
                        elif isinstance(d, int) and d != v:
                            self.warnings.append(f"input {vi.name}: dim {d} overridden by "
                                                 f"--input-shape to {v}")
                _set_dims(vi, new)
                continue
            if dims is None:
                continue
            new = list(dims)
            for i, d in enumerate(dims):
                if isinstance(d, str):
                    symbols.add(d)
                if i == 0 and self.batch is not None and not isinstance(d, int):
                    new[0] = self.batch
                    if isinstance(d, str):
                        self.dims.setdefault(d, self.batch)
                elif isinstance(d, str) and d in self.dims:
                    new[i] = int(self.dims[d])
            _set_dims(vi, new)
        self.input_symbols = set(symbols) | set(self.dims)
        unused = set(self.dims) - symbols - {d for vi in graph_inputs for d in (_dims_of(vi) or ())
                                             if isinstance(d, str)}
        for name in sorted(unused):
            if self.input_shapes:
                continue
            self.warnings.append(f"--dim {name}: no input dimension has that name")

        # weights become graph inputs (shape only) so inference never copies them
        light = onnx.ModelProto()
        light.MergeFrom(_skeleton(model))
        lg = light.graph
        keep = []
        existing_inputs = {vi.name for vi in lg.input}
        for init in lg.initializer:
            self.static.add(init.name)
            n = _numel(init.dims)
            self.dtypes[init.name] = init.data_type
            if n <= SMALL_CONSTANT and init.data_location != TensorProto.EXTERNAL:
                try:
                    self.values[init.name] = numpy_helper.to_array(init)
                except MemoryError:
                    raise
                except Exception:  # noqa: BLE001 - a malformed constant is just unknown
                    pass
                keep.append(init)
            else:
                self.shapes[init.name] = tuple(int(d) for d in init.dims)
                if init.name not in existing_inputs:
                    lg.input.append(helper.make_tensor_value_info(init.name, init.data_type,
                                                                  list(init.dims)))
        # sparse initializers: shapes only
        for sp in lg.sparse_initializer:
            self.static.add(sp.values.name)
            self.shapes[sp.values.name] = tuple(int(d) for d in sp.dims)
        del lg.initializer[:]
        lg.initializer.extend(keep)
        self._check_sizes(light)
        self._infer(light)

    def _check_sizes(self, light) -> None:
        """Implausible declared sizes are errors before any inference runs: shape inference
        with data propagation would try to materialise them."""
        for g in _graphs(light.graph):
            for vi in list(g.input) + list(g.value_info) + list(g.output):
                dims = _dims_of(vi)
                if not dims:
                    continue
                known = [d for d in dims if isinstance(d, int)]
                if any(d < 0 for d in known):
                    raise ModelError(f"tensor '{_s(vi.name)}' declares a negative dimension "
                                     f"{_fmt_shape(dims)}; the graph is invalid")
                if any(d > MAX_DIM for d in known) or _numel(known) > MAX_ELEMENTS:
                    raise ModelError(f"tensor '{_s(vi.name)}' declares an implausible shape "
                                     f"{_fmt_shape(dims)} (over {MAX_ELEMENTS:.0e} elements); "
                                     "check the model or the --input-shape/--dim values")
            for init in g.initializer:
                if any(d < 0 or d > MAX_DIM for d in init.dims) or _numel(init.dims) > MAX_ELEMENTS:
                    raise ModelError(f"initializer '{_s(init.name)}' declares an implausible shape "
                                     f"{list(init.dims)}; the model is corrupt")

    def _infer(self, light):
        try:
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - inference errors mean an invalid graph
            msg = " ".join(str(e).split())[:240]
            try:
                inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False)
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001
                raise ModelError(f"invalid ONNX graph: shape inference failed: {msg}") from None
        self.inferred = inferred
        self._collect(inferred.graph)
        for _ in range(8):  # fold shape arithmetic into constants while it helps
            if not self._missing_shapes(inferred.graph):
                break
            folded = self._fold_shape_arithmetic(light)
            if not folded:
                break
            try:
                inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False,
                                                             data_prop=True)
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - keep what we had
                break
            self.inferred = inferred
            self._collect(inferred.graph)
        if self._missing_shapes(inferred.graph):
            self._symbolic_fallback(inferred)

    def _fold_shape_arithmetic(self, light) -> int:
        """Evaluate small tensors computed from shapes and constants (Shape -> Gather ->
        Concat -> Reshape chains) with ONNX's reference ops, and put them in the light
        model as constants so shape inference can see Reshape targets. Only the main graph;
        only tensors of at most SMALL_CONSTANT elements; never a MAC-bearing op."""
        from onnx.reference import ReferenceEvaluator

        graph = light.graph
        keep_nodes = []
        new_inits = []
        folded = 0
        opsets = {(o.domain or ""): o.version for o in light.opset_import}
        for node in graph.node:
            outs = [o for o in node.output if o]
            value = None
            if node.op_type == "Shape" and node.input:
                dims = self.shapes.get(node.input[0])
                if dims is not None and not _unknowns(dims):
                    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                    start, end = attrs.get("start", 0), attrs.get("end", None)
                    value = [np.array(dims[start:end], dtype=np.int64)]
            elif node.op_type == "Size" and node.input:
                dims = self.shapes.get(node.input[0])
                if dims is not None and not _unknowns(dims):
                    value = [np.array(_numel(dims), dtype=np.int64)]
            elif (node.domain in ("", "ai.onnx") and node.input and outs
                  and node.op_type not in _NONDETERMINISTIC and not _mac_bearing(node.op_type)
                  and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                              for a in node.attribute)
                  and all((not i) or i in self.values for i in node.input)):
                feeds = {i: self.values[i] for i in node.input if i}
                if sum(getattr(v, "size", 1) for v in feeds.values()) <= SMALL_CONSTANT \
                        and self._small_output(node, feeds):
                    try:
                        value = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
                    except MemoryError:
                        raise
                    except Exception:  # noqa: BLE001 - not foldable; leave it to inference
                        value = None
            if value is None or len(value) < len(outs) or any(
                    getattr(v, "size", SMALL_CONSTANT + 1) > SMALL_CONSTANT for v in value[:len(outs)]):
                keep_nodes.append(node)
                continue
            for name, v in zip(node.output, value):
                if not name:
                    continue
                arr = np.asarray(v)
                self.values[name] = arr
                self.meta.add(name)
                self.shapes[name] = tuple(int(d) for d in arr.shape)
                new_inits.append(numpy_helper.from_array(arr, name))
            folded += 1
        if folded:
            del graph.node[:]
            graph.node.extend(keep_nodes)
            graph.initializer.extend(new_inits)
            produced = {i.name for i in new_inits}
            kept_vi = [v for v in graph.value_info if v.name not in produced]
            del graph.value_info[:]
            graph.value_info.extend(kept_vi)
        return folded

    def _collect(self, graph):
        for g in _graphs(graph):
            for vi in list(g.input) + list(g.output) + list(g.value_info):
                dims = _dims_of(vi)
                if dims is not None:
                    dims = tuple(self.dims.get(d, d) if isinstance(d, str) else d for d in dims)
                    old = self.shapes.get(vi.name)
                    if old is None or _unknowns(old) > _unknowns(dims):
                        self.shapes[vi.name] = dims
                if vi.type.HasField("tensor_type"):
                    self.dtypes.setdefault(vi.name, vi.type.tensor_type.elem_type)
            for init in g.initializer:
                self.static.add(init.name)
                self.shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
        # constants and everything computed only from constants are static
        for g in _graphs(graph):
            for node in g.node:
                if node.op_type == "Constant" and node.output:
                    self.static.add(node.output[0])
                    for attr in node.attribute:
                        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                            self.shapes.setdefault(node.output[0], tuple(attr.t.dims))
                            if _numel(attr.t.dims) <= SMALL_CONSTANT:
                                try:
                                    self.values[node.output[0]] = numpy_helper.to_array(attr.t)
                                except MemoryError:
                                    raise
                                except Exception:  # noqa: BLE001
                                    pass
                elif node.op_type in ("Shape", "Size"):
                    self.meta.update(o for o in node.output if o)
                elif node.input and all((not i) or i in self.static for i in node.input) \
                        and node.op_type not in _NONDETERMINISTIC:
                    self.static.update(o for o in node.output if o)
                elif node.input and all((not i) or i in self.static or i in self.meta
                                        for i in node.input) \
                        and node.op_type not in _NONDETERMINISTIC and not _mac_bearing(node.op_type):
                    self.meta.update(o for o in node.output if o)

    def _small_output(self, node, feeds) -> bool:
        """Evaluate only what cannot blow up: outputs whose inferred shape is small, or ops
        whose output is never larger than a broadcast of their inputs."""
        known = [self.shapes.get(o) for o in node.output if o]
        if known and all(d is not None and not _unknowns(d) and _numel(d) <= SMALL_CONSTANT
                         for d in known):
            return True
        if node.op_type not in _NON_EXPANDING:
            return False
        shapes = [tuple(getattr(v, "shape", ())) for v in feeds.values()]
        n = max((len(x) for x in shapes), default=0)
        out = 1
        for axis in range(n):
            out *= max((x[axis - n + len(x)] if axis - n + len(x) >= 0 else 1) for x in shapes)
        return out <= SMALL_CONSTANT

    def _missing_shapes(self, graph) -> bool:
        """True if a node that will be costed has an output whose shape is not fully known."""
        for node in graph.node:
            if node.op_type in ("Shape", "Size", "Constant") or not node.output:
                continue
            out = node.output[0]
            if not out or out in self.static or out in self.meta:
                continue
            dims = self.shapes.get(out)
            if dims is None or _unknowns(dims):
                return True
        return False

    def _symbolic_fallback(self, inferred):
        """onnxruntime's symbolic shape inference resolves more dynamic shapes (e.g.
        Reshape targets computed with Shape/Gather/Concat)."""
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - optional
            return
        try:
            out = SymbolicShapeInference.infer_shapes(inferred, auto_merge=True, guess_output_rank=True)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - best effort; ONNX's own inference stands
            return
        if out is not None:
            self._collect(out.graph)
            self.warnings.append("some shapes were resolved by onnxruntime's symbolic shape inference")

    # -- queries used by the lowerings --
    def shape(self, name: str, node, what: str) -> tuple[int, ...]:
        dims = self.shapes.get(name)
        if dims is None:
            raise UnknownDim(f"node '{_node_name(node)}' ({node.op_type}): the shape of {what} "
                             f"'{name}' is unknown; give the model's input shapes with "
                             "--input-shape NAME=D0,D1,... (or --dim NAME=VALUE)")
        bad = [d for d in dims if not isinstance(d, int) or d < 0]
        if bad:
            sym = next((d for d in bad if isinstance(d, str)), None)
            hint = f"--dim {sym}=VALUE" if sym else "--input-shape NAME=D0,D1,..."
            if sym and not sym.startswith("unk__"):
                extra = " (or --batch N for a leading batch dimension)" if dims and dims[0] == sym else ""
            else:
                extra = " (the dimension depends on the data or on another unresolved input)"
            raise UnknownDim(f"node '{_node_name(node)}' ({node.op_type}): {what} '{name}' has "
                             f"unresolved dimension {sym or '?'} in shape {_fmt_shape(dims)}; "
                             f"set it with {hint}{extra}", symbol=sym)
        if any(d > (1 << 40) for d in dims):
            raise ModelError(f"node '{_node_name(node)}' ({node.op_type}): {what} '{name}' has an "
                             f"implausible shape {_fmt_shape(dims)}")
        return tuple(dims)

    def value(self, name):
        return self.values.get(name)

    def is_static(self, name: str) -> bool:
        return name in self.static


def _model_bytes(model) -> int:
    return model.ByteSize()


def _skeleton(model):
    """A copy of the model without initializer payloads (for very large models)."""
    sk = onnx.ModelProto()
    sk.ir_version = model.ir_version
    sk.opset_import.extend(model.opset_import)
    g = sk.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for init in model.graph.initializer:
        if _numel(init.dims) <= SMALL_CONSTANT:
            g.initializer.append(init)
        else:
            t = g.initializer.add()
            t.name = init.name
            t.data_type = init.data_type
            t.dims.extend(init.dims)
            t.data_location = TensorProto.EXTERNAL  # marks "shape only" for _prepare
    g.sparse_initializer.extend(model.graph.sparse_initializer)
    sk.functions.extend(model.functions)
    return sk


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _unknowns(dims) -> int:
    return sum(1 for d in dims if not isinstance(d, int))


def _fmt_shape(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _s(value) -> str:
    """Protobuf hands back invalid UTF-8 strings as bytes: show them, escaped, as text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _node_name(node) -> str:
    return _s(node.name) or (_s(node.output[0]) if node.output else _s(node.op_type))


_MAC_OPS = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul",
            "MatMulInteger", "QLinearMatMul", "Einsum", "LSTM", "GRU", "RNN", "Attention",
            "MultiHeadAttention", "MatMulNBits", "DynamicQuantizeMatMul", "FusedConv",
            "FusedMatMul", "FusedGemm", "QGemm", "MatMulIntegerToFloat", "NhwcConv",
            "GroupQueryAttention", "QAttention", "QLinearAttention", "DynamicQuantizeLSTM",
            "QOrderedMatMul", "MatMulBnb4", "MatMulFpQ4", "GatedRelativePositionBias",
            "DecoderMaskedMultiHeadAttention", "PackedAttention", "PackedMultiHeadAttention",
            "SparseAttention", "MoE", "QMoE", "NhwcFusedConv", "QLinearConvTranspose",
            "ConvTransposeWithDynamicPads"}


#: ops whose output never holds more elements than the broadcast of their inputs
_NON_EXPANDING = {"Gather", "GatherElements", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast",
                  "CastLike", "Identity", "Reshape", "Flatten", "Transpose", "Neg", "Abs", "Floor",
                  "Ceil", "Sqrt", "Not", "Equal", "Less", "Greater", "LessOrEqual",
                  "GreaterOrEqual", "And", "Or", "Xor", "Where", "Add", "Sub", "Mul", "Div", "Mod",
                  "Min", "Max", "Pow", "Sign", "Clip", "Relu", "ReduceProd", "ReduceSum",
                  "ReduceMin", "ReduceMax", "ReduceMean", "ArgMax", "ArgMin", "Split", "Shape",
                  "Size", "NonZero", "Reciprocal", "Round", "IsNaN", "IsInf"}

_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli", "If", "Loop", "Scan"}


def _mac_bearing(op_type: str) -> bool:
    return op_type in _MAC_OPS


# --------------------------------------------------------------------------------------
# Lowering context
# --------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, graph: Graph, node, importer: "Importer"):
        self.g = graph
        self.node = node
        self.importer = importer
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute
                      if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)}
        self.note = ""
        self.origin_extra: dict = {}

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


@lowering("Conv")
@lowering("FusedConv", domain=MS)
def _conv(ctx):
    layers = [_conv_common(ctx, 0, 1)]
    act = ctx.attr("activation")
    if act and OPS.known(act):
        layers.append(OPS.lower(act, layers[0].output_elems))
    return layers


@lowering("NhwcConv", "NhwcFusedConv", domain=MS)
def _nhwc_conv(ctx):
    return [_conv_common(ctx, 0, 1, nhwc=True)]


@lowering("ConvInteger")
def _conv_integer(ctx):
    return [_conv_common(ctx, 0, 1, bits=8)]


@lowering("QLinearConv")
@lowering("QLinearConv", domain=MS)
def _qlinear_conv(ctx):
    return [_conv_common(ctx, 0, 3, bits=8)]


@lowering("ConvTranspose")
def _conv_transpose(ctx):
    return [_conv_common(ctx, 0, 1, transposed=True)]


@lowering("QLinearConvTranspose", domain=MS)
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


@lowering("MatMul")
def _matmul(ctx):
    return [_mm(ctx, 0, 1)]


@lowering("MatMulInteger")
def _matmul_integer(ctx):
    return [_mm(ctx, 0, 1, bits=8)]


@lowering("QLinearMatMul")
def _qlinear_matmul(ctx):
    return [_mm(ctx, 0, 3, bits=8)]


@lowering("Gemm")
def _gemm(ctx):
    layer = _mm(ctx, 0, 1, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))
    return _bias_layer(ctx, layer, 2)


@lowering("FusedGemm", domain=MS)
def _fused_gemm(ctx):
    layers = _gemm(ctx)
    act = ctx.attr("activation")
    if act and OPS.known(act):
        layers.append(OPS.lower(act, layers[0].output_elems))
    return layers


@lowering("FusedMatMul", domain=MS)
def _fused_matmul(ctx):
    return [_mm(ctx, 0, 1, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))]


@lowering("QGemm", domain=MS)
def _qgemm(ctx):
    layer = _mm(ctx, 0, 3, trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)),
                bits=8)
    return _bias_layer(ctx, layer, 6)


@lowering("MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain=MS)
def _ms_int_matmul(ctx):
    return [_mm(ctx, 0, 1, bits=8)]


@lowering("MatMulNBits", "MatMulBnb4", "MatMulFpQ4", domain=MS)
def _matmul_nbits(ctx):
    a = ctx.in_shape(0)
    k = int(ctx.attr("K") or a[-1])
    n = int(ctx.attr("N"))
    bits = int(ctx.attr("bits", 4) or 4)
    rows = _numel(a[:-1])
    layer = L.fc(rows, k, n, bits=bits)
    ctx.note = f"{bits}-bit weights"
    return [layer]


@lowering("Einsum")
def _einsum(ctx):
    eq = ctx.attr("equation")
    shapes = [ctx.in_shape(i) for i in range(len(ctx.node.input))]
    return [L.einsum(eq, shapes, [ctx.static(i) for i in range(len(shapes))])]


def _attention_core(batch, heads, q_len, kv_len, head_q, head_v, out_elems=None):
    """QK^T and AV products plus the softmax over the scores."""
    scores = L.MatMul(batch=batch * heads, m=q_len, k=head_q, n=kv_len)
    context = L.MatMul(batch=batch * heads, m=q_len, k=kv_len, n=head_v)
    softmax = OPS.lower("softmax", batch * heads * q_len * kv_len)
    return [scores, softmax, context]


@lowering("Attention")
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
    return _attention_core(b, heads, s, kv_len, hq, hv)


@lowering("Attention", domain=MS)
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
    layers += _attention_core(b, heads, s, kv_len, qh // heads, vh // heads)
    return layers


@lowering("MultiHeadAttention", "DecoderMaskedMultiHeadAttention", domain=MS)
def _ms_mha(ctx):
    q = ctx.in_shape(0)
    heads = int(ctx.attr("num_heads"))
    b, s = q[0], q[1]
    if len(q) == 5:  # packed QKV (B, S, heads, 3, H)
        head = q[4]
        return _attention_core(b, heads, s, s, head, head)
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
    return _attention_core(b, heads, s, kv_len, head_q, head_v)


@lowering("GroupQueryAttention", domain=MS)
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
    return _attention_core(b, heads, s, kv_len, head, head)


def _rnn(ctx, cell):
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)
    hidden = int(ctx.attr("hidden_size") or w[1] // L.RNN_GATES[cell])
    direction = ctx.attr("direction", "forward") or "forward"
    dirs = 2 if direction == "bidirectional" else 1
    layout = int(ctx.attr("layout", 0) or 0)
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    return [L.recurrent(cell, seq, batch, x[2], hidden, directions=dirs)]


LOWERINGS["", "LSTM"] = lambda ctx: _rnn(ctx, "lstm")
LOWERINGS["", "GRU"] = lambda ctx: _rnn(ctx, "gru")
LOWERINGS["", "RNN"] = lambda ctx: _rnn(ctx, "rnn")
LOWERINGS[MS, "DynamicQuantizeLSTM"] = lambda ctx: _rnn(ctx, "lstm")


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


LOWERINGS["", "MaxPool"] = lambda ctx: _pool(ctx, "max")
LOWERINGS["", "AveragePool"] = lambda ctx: _pool(ctx, "avg")
LOWERINGS["", "LpPool"] = lambda ctx: _pool(ctx, "lp")
LOWERINGS["", "GlobalMaxPool"] = lambda ctx: _pool(ctx, "max", True)
LOWERINGS["", "GlobalAveragePool"] = lambda ctx: _pool(ctx, "avg", True)
LOWERINGS["", "GlobalLpPool"] = lambda ctx: _pool(ctx, "lp", True)
LOWERINGS[MS, "QLinearAveragePool"] = lambda ctx: _pool(ctx, "avg", nhwc=bool(ctx.attr("channels_last", 0)))
LOWERINGS[MS, "QLinearGlobalAveragePool"] = lambda ctx: _pool(ctx, "avg", True, bool(ctx.attr("channels_last", 0)))
LOWERINGS[MS, "NhwcMaxPool"] = lambda ctx: _pool(ctx, "max", nhwc=True)


@lowering("MaxRoiPool", "RoiAlign")
def _roi(ctx):
    out = ctx.out_shape(0)
    taps = 4 * int(ctx.attr("sampling_ratio", 2) or 2) ** 2 if ctx.node.op_type == "RoiAlign" else 1
    return [L.Elementwise(category="pool", fn=ctx.node.op_type, inputs=ctx.numel_in(0),
                          outputs=_numel(out), operations=_numel(out) * taps)]


@lowering("DeformConv")
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


# --------------------------------------------------------------------------------------
# Walking the graph (with subgraphs)
# --------------------------------------------------------------------------------------

def _repeat(layer: L.Layer, times: int) -> L.Layer:
    """A layer executed ``times`` times: every formula is linear in its batch."""
    if times == 1:
        return layer
    if isinstance(layer, L.Elementwise):
        return replace(layer, inputs=layer.inputs * times, outputs=layer.outputs * times,
                       operations=layer.operations * times)
    if isinstance(layer, L.Counted):
        return replace(layer, mac_count=layer.mac_count * times)
    return replace(layer, batch=layer.batch * times)


class Importer:
    def __init__(self, graph: Graph):
        self.g = graph
        self.nodes: list[Node] = []
        self._names: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        return name if n == 0 else f"{name}#{n}"

    def run(self) -> list[Node]:
        for i, node in enumerate(self.g.model.graph.node):
            self.nodes.append(self.lower_node(node, i, path=""))
        return self.nodes

    def lower_layers(self, node, depth: int = 0) -> tuple[list, str, bool]:
        """(layers, note, modeled) for one node, recursing into subgraphs."""
        if not isinstance(node.op_type, str) or not isinstance(node.domain, str):
            return [], "op type or domain is not valid UTF-8", False
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        if depth > MAX_SUBGRAPH_DEPTH:
            raise ModelError(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} levels")
        if node.op_type in ("If", "Loop", "Scan") and domain == "":
            return self._control_flow(node, depth)
        fn = LOWERINGS.get((domain, node.op_type))
        if fn is None:
            return [], "", False
        # constant-foldable: every input a constant/initializer -> computed once at load time
        if node.op_type in ("Shape", "Size"):
            return [L.Elementwise(category="data", fn=node.op_type, inputs=0, outputs=0,
                                  operations=0)], "", True
        if node.input and not _mac_bearing(node.op_type) and node.op_type not in _NONDETERMINISTIC:
            if all((not i) or self.g.is_static(i) for i in node.input):
                note = "constant-foldable: computed once at load time"
            elif all((not i) or self.g.is_static(i) or i in self.g.meta for i in node.input):
                note = "shape arithmetic: resolved at compile time for the given input shapes"
            else:
                note = ""
            if note:
                return [L.Elementwise(category="data", fn=node.op_type, inputs=0, outputs=0,
                                      operations=0)], note, True
        ctx = Ctx(self.g, node, self)
        try:
            layers = list(fn(ctx))
        except UnknownDim as e:
            # a shape no flag can set (it depends on the data): report the node, don't fail
            if not _mac_bearing(node.op_type) and e.symbol not in self.g.input_symbols:
                return [], ("its output shape depends on the input data (unresolved dimension "
                            f"{e.symbol or '?'}), so it could not be costed"), False
            raise
        except LayerError as e:
            raise ModelError(f"node '{_node_name(node)}' ({node.op_type}): {e}") from None
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
            raise ModelError(f"node '{_node_name(node)}' ({node.op_type}) has attributes or "
                             f"input shapes FODLAM cannot read ({type(e).__name__}: {e}); is "
                             "the graph valid? (check it with onnx.checker)") from None
        return layers, ctx.note, True

    def _subgraph_layers(self, graph, depth):
        layers, unmodeled = [], []
        for node in graph.node:
            sub, _, modeled = self.lower_layers(node, depth + 1)
            if not modeled:
                unmodeled.append(node.op_type)
            layers += sub
        return layers, unmodeled

    def _control_flow(self, node, depth):
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "If":
            branches = {}
            for key in ("then_branch", "else_branch"):
                if key in attrs:
                    branches[key] = self._subgraph_layers(attrs[key].g, depth)
            if not branches:
                raise ModelError(f"node '{_node_name(node)}' (If) has no branches")

            def weight(item):
                layers = item[1][0]
                return (sum(x.macs for x in layers), sum(x.ops for x in layers))

            chosen, (layers, unmodeled) = max(branches.items(), key=weight)
            others = ", ".join(f"{k}: {sum(x.macs for x in v[0])} MACs" for k, v in branches.items())
            note = f"If: costed the larger branch, {chosen} ({others})"
            if unmodeled:
                note += f"; not costed inside: {', '.join(sorted(set(unmodeled)))}"
            return layers, note, True
        if node.op_type == "Loop":
            body = attrs.get("body")
            if body is None:
                raise ModelError(f"node '{_node_name(node)}' (Loop) has no body")
            layers, unmodeled = self._subgraph_layers(body.g, depth)
            trip = None
            if node.input and node.input[0]:
                value = self.g.value(node.input[0])
                if value is not None and getattr(value, "size", 0) == 1:
                    trip = int(value.reshape(-1)[0])
            if trip is None or trip < 0 or trip > (1 << 40):
                note = ("Loop without a static trip count: costed ONE iteration of the body; "
                        "the real cost scales with the number of iterations")
                self.g.warnings.append(f"node '{_node_name(node)}': {note}")
                trip = 1
            else:
                note = f"Loop: body x {trip} iterations (static trip count)"
            if unmodeled:
                note += f"; not costed inside: {', '.join(sorted(set(unmodeled)))}"
            return [_repeat(x, trip) for x in layers], note, True
        # Scan: iterations = length of the first scan input along its scan axis
        body = attrs.get("body")
        if body is None:
            raise ModelError(f"node '{_node_name(node)}' (Scan) has no body")
        layers, unmodeled = self._subgraph_layers(body.g, depth)
        n_scan = len(body.g.input) - int(helper.get_attribute_value(attrs["num_scan_inputs"])) \
            if "num_scan_inputs" in attrs else 0
        trip = None
        scan_inputs = [i for i in node.input if i][n_scan:]
        axes = list(helper.get_attribute_value(attrs["scan_input_axes"])) if "scan_input_axes" in attrs else []
        if scan_inputs:
            shape = self.g.shapes.get(scan_inputs[0])
            axis = axes[0] if axes else 0
            if shape and isinstance(shape[axis], int):
                trip = shape[axis]
        if trip is None:
            raise UnknownDim(f"node '{_node_name(node)}' (Scan): the scan length of input "
                             f"'{scan_inputs[0] if scan_inputs else '?'}' is unknown; set the "
                             "input's shape with --input-shape or --dim")
        note = f"Scan: body x {trip} iterations"
        return [_repeat(x, trip) for x in layers], note, True

    def lower_node(self, node, index: int, path: str) -> Node:
        op_type, domain = _s(node.op_type), _s(node.domain)
        name = self.unique(_s(node.name) or f"{op_type}_{index}")
        layers, note, modeled = self.lower_layers(node)
        origin = {"onnx_node": _s(node.name), "op_type": op_type, "index": index}
        if domain and domain != "ai.onnx":
            origin["domain"] = domain
        if modeled and any(x.bits for x in layers):
            origin["bits"] = next(x.bits for x in layers if x.bits)
        return Node(name=name, op=op_type if not domain or domain == "ai.onnx"
                    else f"{domain}.{op_type}", layers=tuple(layers), origin=origin,
                    modeled=modeled, note=note)


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------

def import_file(path, *, input_shapes=None, dims=None, batch=None):
    """(nodes, info, warnings, batch) for an ONNX file."""
    try:
        return _import_file(path, input_shapes=input_shapes, dims=dims, batch=batch)
    except UnicodeError:
        raise ModelError(f"{path} has names or strings that are not valid UTF-8 (ONNX requires "
                         "UTF-8); re-export the model or fix its names") from None


def _inline_functions(model):
    """Nodes that call model-local functions are replaced by the functions' bodies, so
    every operation inside is costed (exporters emit them for modules-as-functions)."""
    if not len(model.functions):
        return model, []
    try:
        from onnx import inliner
        inlined = inliner.inline_local_functions(model)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - leave the calls as they are, and say so
        return model, [f"could not inline the model's local functions ({type(e).__name__}); "
                       "nodes calling them are reported as unmodeled"]
    return inlined, [f"inlined {len(model.functions)} model-local function(s)"]


def _import_file(path, *, input_shapes=None, dims=None, batch=None):
    model, notes = _inline_functions(load(path))
    warnings = _check_external_data(model, Path(path).resolve().parent)
    graph = Graph(model, input_shapes=input_shapes, dims=dims, batch=batch, source=str(path))
    nodes = Importer(graph).run()
    warnings = notes + warnings
    inputs = {}
    init_names = {i.name for i in model.graph.initializer}
    for vi in graph.inferred.graph.input:
        if vi.name in init_names or vi.name in graph.static:
            continue
        inputs[_s(vi.name)] = [d if isinstance(d, int) else str(_s(d)) for d in
                               (graph.shapes.get(vi.name) or ())]
    info = {"name": Path(path).stem, "format": "onnx", "source": str(path),
            "opsets": {_s(k) or "ai.onnx": v for k, v in sorted(graph.opset.items(), key=lambda kv: str(kv[0]))},
            "producer": f"{_s(model.producer_name)} {_s(model.producer_version)}".strip(),
            "inputs": inputs}
    first = next(iter(inputs.values()), None)
    resolved_batch = batch if batch is not None else (
        first[0] if first and isinstance(first[0], int) else 1)
    return nodes, info, warnings + graph.warnings, resolved_batch


def profile_file(path, *, accelerator=None, input_shapes=None, dims=None, batch=None,
                 strict: bool = False, cost_model: str | None = None):
    from fodlam.api import cost_model_for
    from fodlam.profile import build_profile

    nodes, info, warnings, resolved_batch = import_file(path, input_shapes=input_shapes,
                                                        dims=dims, batch=batch)
    profile = build_profile(nodes, cost_model_for(accelerator, cost_model=cost_model), model=info,
                            batch=resolved_batch, warnings=warnings)
    if strict:
        profile.check_modeled()
    return profile


def write_annotated(path, profile, out_path) -> None:
    """A copy of the model whose nodes carry their estimate (doc string and metadata, shown
    by Netron) and whose model metadata holds the totals. Weights stay where they were."""
    model = load(path)
    by_index = {n.node.origin.get("index"): n for n in profile.nodes}
    for i, node in enumerate(model.graph.node):
        cost = by_index.get(i)
        if cost is None:
            continue
        text = (f"FODLAM: {cost.macs} MACs, {cost.energy_j:.6g} J, {cost.latency_s:.6g} s, "
                f"kind {cost.kind}, {cost.method}: {cost.how}")
        node.doc_string = (node.doc_string + "\n" if node.doc_string else "") + text
        if hasattr(node, "metadata_props"):
            for key, value in (("fodlam.macs", cost.macs), ("fodlam.energy_j", repr(cost.energy_j)),
                               ("fodlam.latency_s", repr(cost.latency_s)), ("fodlam.kind", cost.kind),
                               ("fodlam.method", cost.method)):
                entry = node.metadata_props.add()
                entry.key, entry.value = key, str(value)
    for key, value in (("fodlam.total_macs", profile.total_macs),
                       ("fodlam.total_energy_j", repr(profile.total_energy_j)),
                       ("fodlam.total_latency_s", repr(profile.total_latency_s)),
                       ("fodlam.accelerator", profile.accelerator.get("name")),
                       ("fodlam.cost_model", f"{profile.cost_model.get('name')} "
                                             f"({profile.cost_model.get('mode')})"),
                       ("fodlam.batch", profile.batch)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    try:
        onnx.save(model, str(out_path))
    except OSError as e:
        raise InputError(f"cannot write {out_path}: {e.strerror or e}") from None


__all__ = ["LOWERINGS", "import_file", "profile_file", "write_annotated", "load"]
