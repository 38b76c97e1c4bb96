"""Shape inference and folding: every tensor's shape, static (weight) names and small
values, with weights hidden from ONNX's inference so nothing is copied."""

from __future__ import annotations


from fodlam.errors import InputError, ModelError

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._common import (MAX_DIM, MAX_ELEMENTS, SMALL_CONSTANT, UnknownDim, _NON_EXPANDING,
                      _NONDETERMINISTIC, _dims_of, _fmt_shape, _graphs, _mac_bearing, _node_name,
                      _numel, _s, _set_dims, _unknowns)


# --------------------------------------------------------------------------------------
# The import proper
# --------------------------------------------------------------------------------------

def _symbolic_infer(cls, model):
    """onnxruntime's ``SymbolicShapeInference.infer_shapes`` without its side effect: when
    inference is incomplete it writes ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data``
    file into the current directory; here an incomplete result is simply not used."""
    from onnxruntime.tools.symbolic_shape_infer import get_opset

    opset = get_opset(model)
    if not opset or opset < 7:
        return None
    sym = cls(2**31 - 1, True, True, 0)     # int_max, auto_merge, guess_output_rank, verbose
    sym._preprocess(model)
    complete = False
    while sym.run_:
        complete = sym._infer_impl()
    sym._update_output_from_vi()
    return sym.out_mp_ if complete else None


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
        #: symbolic input dimensions, as the exporter named them, that still have no value
        self.missing_input_dims = [d for d in dict.fromkeys(
            d for vi in graph_inputs for d in (_dims_of(vi) or ()) if isinstance(d, str))
            if d not in self.dims and not (self.batch is not None and d in self.dims)]
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
            out = _symbolic_infer(SymbolicShapeInference, inferred)
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
            missing = [d for d in getattr(self, "missing_input_dims", []) if d != sym]
            if sym and sym in self.input_symbols:
                extra = " (or --batch N for a leading batch dimension)" if dims and dims[0] == sym else ""
                if missing:
                    extra += f"; input dimensions also without a value: {', '.join(missing)}"
            elif missing:
                # an internal name (unk__N) derived from input dimensions the user has not set:
                # name those, as the exporter's dynamic_axes named them
                hint = " ".join(f"--dim {d}=VALUE" for d in missing)
                extra = (f" (the model's input dimension{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} {'have' if len(missing) > 1 else 'has'} no value; "
                         f"{sym or 'this dimension'} follows from {'them' if len(missing) > 1 else 'it'})")
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
