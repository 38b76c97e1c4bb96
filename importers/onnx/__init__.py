"""ONNX front end: load (no external data), infer shapes, lower each node to canonical layers.

The pipeline, one file per step:

* ``wire``: a structure-only protobuf reader (graph and tensor headers; weight payloads
  and external data are never read) and ``load``;
* ``shapes``: ``Graph``, shape inference and folding with the weights hidden;
* ``lowerings``: the table ``LOWERINGS`` mapping (domain, op_type) to a small function per
  op family; an op absent from it becomes an *unmodeled* node (reported, never dropped);
* ``walk``: ``Importer``, the graph walk with subgraphs and local functions, and the entry
  point ``import_file`` (an ``Imported``: nodes, network, warnings, batch);
* ``annotate``: ``write_annotated``, the model with every node's estimate for Netron;
* ``generation``: ``trace_generation_onnx``, a decoder exported with its KV cache imported
  at the prompt pass's and sampled decode steps' symbolic sizes (a ``GenerationTrace``).

The arithmetic lives in ``fodlam.layers`` and ``fodlam.ops``; these files only read ONNX
attributes and shapes.
"""

try:  # imported lazily by fodlam.api; never at fodlam import time
    import numpy  # noqa: F401
    import onnx  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError("the ONNX importer needs onnx: pip install 'fodlam[onnx]'") from e

from ._common import MAX_DIM, MAX_ELEMENTS, MAX_SUBGRAPH_DEPTH, SMALL_CONSTANT, UnknownDim
from .annotate import write_annotated
from .generation import trace_generation_onnx
from .lowerings import LOWERINGS, MS, Ctx, lowering
from .shapes import Graph
from .walk import Importer, import_file
from .wire import load, load_structure

__all__ = ["LOWERINGS", "import_file", "write_annotated", "trace_generation_onnx", "load", "load_structure",
           "Graph", "Importer", "Ctx", "lowering", "UnknownDim", "MS", "SMALL_CONSTANT", "MAX_DIM",
           "MAX_ELEMENTS", "MAX_SUBGRAPH_DEPTH"]
