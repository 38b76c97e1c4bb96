"""Step 5 of a sweep: its outputs. The rows as CSV and Parquet (written atomically, typed
by the sweep's columns), reading a result back, and the Pareto fronts and top points per
model and batch.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..report.sweep import front, group_label
from .parts import Parts
from .spec import Sweep, column_types, columns

def _csv_value(v):
    return "" if v is None else (repr(v) if isinstance(v, float) else v)


def write_csv(path, sweep: Sweep, rows) -> None:
    """The sweep's rows (any iterable: a Result's ``iter_rows()`` streams them) as CSV,
    written atomically (never a half-written file)."""
    import csv

    from .._io import atomic_path
    cols = columns(sweep)
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for r in rows:
                w.writerow([_csv_value(r.get(c)) for c in cols])
    except OSError as e:          # a full disk, a read-only folder, a file-size limit
        raise InputError(f"cannot write {path}: {e.strerror or e}; nothing was written there, "
                         "and the finished chunks stay in the cache") from None


#: rows per row group of the final Parquet file
ROW_GROUP = 65536


def write_parquet(path, sweep: Sweep, rows) -> None:
    """The sweep's rows as one Parquet file (zstd), written atomically: from a Result its
    parts are streamed in order, one row group per chunk; from a list, in one go."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("Parquet output needs pyarrow: pip install 'fodlam[sweep]' (or use --no-parquet)") from None
    from .._io import atomic_path
    streamed = hasattr(rows, "chunks") and hasattr(rows, "parts")      # a sweep Result
    parts = rows.parts if streamed else Parts("", columns(sweep), column_types(sweep))
    schema = parts.schema()
    try:
        with atomic_path(path) as tmp:
            with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
                if streamed:
                    # parts gathered into row groups of about ROW_GROUP rows: few row groups (small
                    # footer metadata), bounded memory
                    batch, n = [], 0
                    for ref in rows.chunks:
                        table = parts.read_table(ref).select(schema.names).cast(schema)
                        batch.append(table)
                        n += table.num_rows
                        if n >= ROW_GROUP:
                            writer.write_table(pa.concat_tables(batch), row_group_size=n)
                            batch, n = [], 0
                    if batch:
                        writer.write_table(pa.concat_tables(batch), row_group_size=n)
                else:
                    writer.write_table(pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows],
                                                            schema=schema))
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}; nothing was written there, "
                         "and the finished chunks stay in the cache") from None


def read_results(path) -> list[dict]:
    """Rows of a sweep result (CSV or Parquet) as dicts with numbers where numbers belong."""
    return list(iter_results(path))


_TEXT_COLUMNS = ("model", "accelerator", "overrides", "status", "error", "scaling",
                 "accelerator_source")


def _typed_row(r: dict) -> dict:
    for k, v in r.items():
        if k in _TEXT_COLUMNS:
            continue
        if isinstance(v, str):
            try:
                v = float(v) if v != "" else None
            except ValueError:
                continue
        if k in ("point", "batch") and isinstance(v, float) and v.is_integer():
            v = int(v)
        r[k] = v
    return r


def _checked(r: dict, path, row: int) -> dict:
    """A costed row's figures are finite and non-negative, else a one-line error naming the
    row (a result edited by hand, or damaged, is never drawn as if it were a cost)."""
    import math

    if r.get("status") == "ok":
        for key in ("energy_j", "latency_s", "edp_js"):
            v = r.get(key)
            if v is None and key == "edp_js":
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise InputError(f"{path}: row {row}: {key} = {v!r} is not a cost (a finite, "
                                 "non-negative number); the result was edited or damaged")
    return r


def iter_results(path, batch_rows: int = 65536):
    """The rows of a sweep result, one at a time (CSV read line by line, Parquet batch by
    batch): a report of 10^7 rows never holds them all."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        i = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            for r in batch.to_pylist():
                i += 1
                yield _checked(_typed_row(r), path, i)
        return
    import csv
    # a cell may be long (an error message, a long overrides text): far above csv's default
    # 128 KiB limit, and a cell past even this is a one-line error naming its row
    csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            for i, r in enumerate(reader, start=2):
                yield _checked(_typed_row(r), path, i)
        except csv.Error as e:
            raise InputError(f"{path}: row {reader.line_num}: {e}; the file is not a sweep result "
                             "FODLAM can read") from None


def is_sweep_result(path) -> bool:
    path = Path(path)
    if path.suffix == ".parquet":
        return True
    if path.suffix != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        head = f.readline()
    return head.startswith("point,model,batch,accelerator")


def _by_group(rows: list[dict]) -> dict:
    by_model: dict = {}
    for r in rows:
        if r.get("status") == "ok":
            by_model.setdefault(group_label(r), []).append(r)
    return by_model


def pareto(rows: list[dict]) -> dict:
    """Per model (and batch): the points no other point beats on both energy and latency."""
    return {model: front(rs) for model, rs in _by_group(rows).items()}


def top(rows: list[dict], k: int) -> dict:
    """Per model (and batch): the ``k`` points of lowest energy x latency."""
    return {m: sorted(rs, key=lambda r: float(r["edp_js"]))[:k] for m, rs in _by_group(rows).items()}


def top_streaming(rows, k: int) -> dict:
    """The ``k`` points of lowest energy x latency per model and batch, from an iterable of
    rows read once (a bounded heap per group: the rows are never held)."""
    import heapq

    best: dict = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        heap = best.setdefault(group_label(r), [])
        item = (-float(r["edp_js"]), -r["point"], r)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return {m: [x[2] for x in sorted(h, key=lambda x: (-x[0], -x[1]))] for m, h in best.items()}
