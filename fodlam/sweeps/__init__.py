"""Design-space sweeps: models x accelerator variants x process nodes x batches.

    fodlam sweep SWEEP.toml [--jobs N] [--backend ray --address ADDR] [--pareto] [--top K]

A sweep file names the models (ONNX paths or globs, ``module:factory`` torch models with
input shapes), the accelerators (bundled names or TOML paths) with overrides of their
numeric fields as grids or lists, process nodes and batches::

    [sweep]
    batches = [1, 8]
    nodes = [28, 7]                 # optional; each profile's own node when absent
    scaling = "dennard"

    [[models]]
    onnx = "zoo/*.onnx"
    dims = { batch = 1 }

    [[models]]
    torch = "examples.zoo:resnet50"
    input_shape = [1, 3, 224, 224]

    [[accelerators]]
    profile = "tpu-v1"
    grid = { "architecture.array_k" = [64, 128, 256], "architecture.clock_mhz" = [700, 1000] }

    [[accelerators]]
    profile = "nvdla-nv-full"
    points = [{ "architecture.onchip_bytes" = 1048576 }, { "architecture.dram_bytes_per_s" = 64e9 }]

Each model is imported once per batch; its lowered nodes are costed on every accelerator
point. A point's row is cached under a hash of (model file bytes or factory source, shapes,
batch, the profile after overrides, node and scaling, FODLAM version), so an interrupted or
extended sweep redoes only what is missing. Rows come out in the order of the sweep file
whatever the number of workers.

The pipeline, one file per step:

* ``spec``: the sweep file read into its spaces (``load_sweep`` -> ``Sweep``: models,
  ``AccelSpace`` of accelerator entries with grids and point lists, nodes, batches) and
  the result's columns; overrides applied and re-validated (``apply_overrides``);
* ``plan``: costing — a model imported once per batch (``import_model``), its ``CostPlan``
  (distinct layers, order, fusion), and a chunk of points costed (``run_chunk``);
* ``parts``: chunks (``plan_chunks``, ``ChunkTask``, ``ChunkRef``) and their Parquet parts
  with the index of finished chunks (``Parts``);
* ``runner``: ``run`` — cached chunks served, missing ones costed in process, on a local
  process pool or on Ray (``ray_backend``), signals handled (``on_signals``); and
  ``estimate``, the plan measured without running it (``--dry-run``);
* ``output``: CSV and Parquet (``write_csv``, ``write_parquet``), reading results back,
  Pareto fronts and top points.
"""

from .output import (_csv_value, _typed_row, is_sweep_result, iter_results, pareto,
                     read_results, top, top_streaming, write_csv, write_parquet)
from .parts import (CHUNK, FIRST_CHUNK, ChunkRef, ChunkTask, Parts, chunk_rows, cost_chunk,
                    plan_chunks)
from .plan import (CostPlan, cost_generation_row, cost_nodes, cost_plan, effective,
                   import_model, run_chunk)
from .runner import Estimate, Interrupted, Result, estimate, on_signals, run
from .spec import (BASE_COLUMNS, KIND_COLUMNS, LLM_COLUMNS, REQUIRED_COLUMNS, SWEEPABLE,
                   AccelEntry, AccelSpace, AccelSpec, Point, PointSpace, Sweep, all_columns,
                   apply_overrides, column_types, columns, load_sweep, select_columns,
                   sweepable_fields)

__all__ = ["BASE_COLUMNS", "CHUNK", "FIRST_CHUNK", "KIND_COLUMNS", "LLM_COLUMNS",
           "REQUIRED_COLUMNS", "SWEEPABLE", "AccelEntry", "AccelSpace", "AccelSpec", "ChunkRef",
           "ChunkTask", "CostPlan", "Interrupted", "Parts", "Point", "PointSpace", "Result",
           "Sweep", "all_columns", "apply_overrides", "chunk_rows", "column_types", "columns",
           "cost_chunk", "cost_generation_row", "cost_nodes", "cost_plan", "effective",
           "import_model", "is_sweep_result", "iter_results", "load_sweep", "on_signals",
           "pareto", "plan_chunks", "read_results", "run", "run_chunk", "select_columns",
           "sweepable_fields", "top", "top_streaming", "Estimate", "estimate", "write_csv", "write_parquet", "_csv_value", "_typed_row"]
