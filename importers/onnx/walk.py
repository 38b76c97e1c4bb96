"""The graph walk: nodes in order, subgraphs (If, Loop, Scan), local functions, and the
entry point ``import_file``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fodlam import layers as L
from fodlam.errors import InputError, LayerError, ModelError
from fodlam.nodes import Imported, Node, apply_weight_density

from onnx import helper

from ._common import MAX_SUBGRAPH_DEPTH, UnknownDim, _NONDETERMINISTIC, _mac_bearing, _node_name, _s
from .lowerings import LOWERINGS, Ctx
from .shapes import Graph
from .wire import _check_external_data, load


# --------------------------------------------------------------------------------------
# Walking the graph (with subgraphs)
# --------------------------------------------------------------------------------------

#: ONNX element types -> bits (FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT8, UINT8, INT16, UINT16,
#: INT32, FLOAT8 variants, INT4, UINT4)
_ELEM_BITS = {1: 32, 11: 64, 10: 16, 16: 16, 3: 8, 2: 8, 5: 16, 4: 16, 6: 32, 17: 8, 18: 8,
              19: 8, 20: 8, 22: 4, 21: 4}


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
        self._producer: dict[str, str] = {}     # tensor name -> the node that wrote it

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
        ctx = Ctx(self.g, node)
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
        bits = _ELEM_BITS.get(self.g.dtypes.get(node.input[0])) if node.input else None
        if bits and modeled:
            layers = [replace(x, bits=bits) if x.macs and x.bits is None else x for x in layers]
        origin = {"onnx_node": _s(node.name), "op_type": op_type, "index": index}
        if domain and domain != "ai.onnx":
            origin["domain"] = domain
        if modeled and any(x.bits for x in layers):
            origin["bits"] = next(x.bits for x in layers if x.bits)
        inputs = tuple(dict.fromkeys(self._producer[i] for i in node.input
                                     if i and i in self._producer))
        for out in node.output:
            if out:
                self._producer[out] = name
        return Node(name=name, op=op_type if not domain or domain == "ai.onnx"
                    else f"{domain}.{op_type}", layers=tuple(layers), origin=origin,
                    modeled=modeled, note=note, inputs=inputs)


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------

def import_file(path, *, input_shapes=None, dims=None, batch=None, weight_density=None) -> Imported:
    """The lowered nodes of an ONNX file, as data (no cost). ``weight_density``: "measure"
    (read the initializers and count their non-zeros; opt-in) or a number for every fc
    weight."""
    try:
        nodes, info, warnings, resolved = _import_file(path, input_shapes=input_shapes, dims=dims,
                                                       batch=batch)
    except UnicodeError:
        raise ModelError(f"{path} has names or strings that are not valid UTF-8 (ONNX requires "
                         "UTF-8); re-export the model or fix its names") from None
    nodes = _weight_densities(path, weight_density, nodes)
    return Imported(nodes=nodes, network=info, warnings=warnings, batch=resolved)


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


#: the most elements ``--weight-density measure`` decodes from one initializer (2^31)
MEASURE_LIMIT = 1 << 31


def _weight_densities(path, spec, nodes) -> list:
    """fc layers with the weight density given (a number) or measured from the initializers
    they multiply ("measure": reads the weights, from inside the model's folder only)."""
    if spec is None:
        return nodes
    if spec == "measure":
        import numpy as np
        from onnx import numpy_helper

        from .annotate import _full_model

        model = _full_model(path)
        density = {}
        for init in model.graph.initializer:
            if len(init.dims) >= 2:
                declared = 1
                for d in init.dims:
                    declared *= max(0, int(d))
                if declared > MEASURE_LIMIT:
                    raise InputError(f"{path}: initializer {init.name!r} declares {declared:,} "
                                     f"elements, more than measuring reads ({MEASURE_LIMIT:,}); give "
                                     "--weight-density as a number instead")
                try:
                    arr = numpy_helper.to_array(init)
                except (ValueError, TypeError, OverflowError, MemoryError) as e:
                    raise InputError(f"{path}: initializer {init.name!r} cannot be read to measure "
                                     f"its density ({type(e).__name__}: "
                                     f"{' '.join(str(e).split())[:120]}); the file is damaged, or "
                                     "give --weight-density as a number") from None
                if arr.size != declared:
                    raise InputError(f"{path}: initializer {init.name!r} holds {arr.size} values "
                                     f"for a declared {declared}; the file is damaged")
                density[init.name] = float(np.count_nonzero(arr)) / max(1, arr.size)
        by_index = {i: n for i, n in enumerate(model.graph.node)}

        def of(node):
            onnx_node = by_index.get(node.origin.get("index"))
            if onnx_node is None:
                return None
            return next((density[i] for i in onnx_node.input if i in density), None)
        return apply_weight_density(nodes, of)
    if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not 0 < spec <= 1:
        raise InputError(f"weight density must be 'measure' or a number in (0, 1], got {spec!r}")
    return apply_weight_density(nodes, lambda node: float(spec))
