"""Step 3 of a sweep: chunks and their parts on disk. The points of one model at one
batch are cut into chunks of one accelerator entry (the unit of work and of the cache);
a finished chunk is one Parquet part, written atomically, and a line of ``index.jsonl``,
so a rerun costs only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .._version import __version__
from ..errors import InputError
from .plan import run_chunk
from .spec import AccelEntry, AccelSpec, Sweep, columns

#: points per chunk, the unit of work, of the cache and of the output parts; fixed (not
#: tied to the worker count) so that a rerun with other settings reuses finished chunks
CHUNK = 4096
#: the first chunk of each model, batch and accelerator entry
FIRST_CHUNK = 256


@dataclass(frozen=True)
class ChunkRef:
    """A chunk of one model at one batch on a contiguous range of one accelerator entry."""

    key: str                 # content hash: the part's file name
    point0: int              # global index of the chunk's first point
    rows: int
    ok: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ChunkTask:
    key: str
    point0: int
    model: str
    batch: int | None
    entry: AccelEntry
    start: int
    stop: int


def has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401,F811
    except ImportError:
        return False
    return True


class Parts:
    """The parts folder of a sweep: one Parquet file per finished chunk (written to a
    temporary name and renamed, so a part is whole or absent) and ``index.jsonl``, one line
    per finished chunk: resuming reads the index, not the rows. ``root`` is a local folder
    or any ``pyarrow.fs`` URI (``s3://bucket/prefix``) that every worker can write to."""

    def __init__(self, root, columns: list[str], types: dict):
        self.root = str(root)
        self.columns = list(columns)
        self.types = dict(types)
        self.uri = "://" in self.root
        #: without pyarrow (``fodlam[sweep]``), local parts are JSON lines, one row a line
        self.arrow = has_pyarrow()
        if self.uri and not self.arrow:
            raise InputError(f"the sweep cache {self.root} is a URI, which needs pyarrow: pip "
                             "install 'fodlam[sweep]' (or give a local folder)")

    # -- storage --------------------------------------------------------------------------
    def _jsonl(self, key: str) -> str:
        return os.path.join(os.path.abspath(self.root), f"{key}.jsonl")

    def _fs(self):
        import pyarrow.fs as pafs
        if self.uri:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), os.path.abspath(self.root)

    def prepare(self) -> None:
        if not self.arrow:
            os.makedirs(self.root, exist_ok=True)
            return
        fs, base = self._fs()
        fs.create_dir(base, recursive=True)

    def schema(self):
        import pyarrow as pa
        kinds = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
        return pa.schema([(c, kinds[self.types.get(c, "float")]) for c in self.columns])

    def write(self, key: str, rows: list[dict]) -> None:
        """A chunk's rows as one Parquet part, atomically."""
        if not self.arrow:
            tmp = f"{self._jsonl(key)}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({c: r.get(c) for c in self.columns}) + "\n")
            os.replace(tmp, self._jsonl(key))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self.schema()
        table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows], schema=schema)
        fs, base = self._fs()
        tmp = f"{base}/.{key}.{os.getpid()}.tmp"
        with fs.open_output_stream(tmp) as out:
            pq.write_table(table, out, compression="zstd")
        fs.move(tmp, f"{base}/{key}.parquet")

    def read(self, ref: ChunkRef):
        if not self.arrow:
            with open(self._jsonl(ref.key), encoding="utf-8") as f:
                for j, line in enumerate(f):
                    r = json.loads(line)
                    yield {"point": ref.point0 + j, **{k: v for k, v in r.items() if k != "point"}}
            return
        import pyarrow.parquet as pq

        fs, base = self._fs()
        with fs.open_input_file(f"{base}/{ref.key}.parquet") as f:
            table = pq.read_table(f)
        for j, r in enumerate(table.to_pylist()):
            yield {"point": ref.point0 + j, **{k: v for k, v in r.items() if k != "point"}}

    def read_table(self, ref: ChunkRef):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, base = self._fs()
        with fs.open_input_file(f"{base}/{ref.key}.parquet") as f:
            table = pq.read_table(f)
        points = pa.array(range(ref.point0, ref.point0 + table.num_rows), pa.int64())
        return table.set_column(table.schema.get_field_index("point"), "point", points)

    # -- the index of finished chunks ------------------------------------------------------
    def load_index(self) -> dict:
        try:
            if self.arrow:
                fs, base = self._fs()
                with fs.open_input_stream(f"{base}/index.jsonl") as f:
                    data = f.read()
            else:
                with open(os.path.join(self.root, "index.jsonl"), "rb") as f:
                    data = f.read()
        except (FileNotFoundError, OSError):
            return {}
        done = {}
        for line in data.splitlines():
            try:
                item = json.loads(line.decode("utf-8"))
                key = item["key"]
                if isinstance(key, str) and all(isinstance(item[k], int) and item[k] >= 0
                                                for k in ("rows", "ok", "failed")):
                    done[key] = item
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue                  # a line cut short, or not ours: that chunk reruns
        return done

    def exists(self, key: str) -> bool:
        if not self.arrow:
            return os.path.isfile(self._jsonl(key))
        import pyarrow.fs as pafs
        fs, base = self._fs()
        return fs.get_file_info(f"{base}/{key}.parquet").type == pafs.FileType.File

    def record(self, refs: list) -> None:
        """Append finished chunks to the index (local folders; a URI keeps its parts and
        relies on them: ``exists`` is checked on resume)."""
        if self.uri or not refs:
            return
        with open(os.path.join(self.root, "index.jsonl"), "a", encoding="utf-8") as f:
            for ref in refs:
                f.write(json.dumps({"key": ref.key, "rows": ref.rows, "ok": ref.ok,
                                    "failed": ref.failed}) + "\n")
            f.flush()


def chunk_rows(nodes, task: ChunkTask) -> list[dict]:
    """The rows of one chunk: its points costed (a failing point is a failed row)."""
    specs = [task.entry.spec(i) for i in range(task.start, task.stop)]
    out = run_chunk(nodes, specs)
    rows = []
    for spec, res in zip(specs, out):
        base = _identity(task.model, task.batch, spec)
        if "error" in res:
            rows.append({**base, "status": "failed", "error": res["error"]})
        else:
            rows.append({**base, "status": "ok", "error": "", **res})
    return rows


def cost_chunk(nodes, task: ChunkTask, parts: Parts) -> ChunkRef:
    """Cost a chunk and write its part (runs in a worker; returns only counts)."""
    rows = chunk_rows(nodes, task)
    parts.write(task.key, rows)
    failed = sum(r["status"] != "ok" for r in rows)
    return ChunkRef(task.key, task.point0, len(rows), len(rows) - failed, failed)


def _identity(model: str, batch, spec: AccelSpec) -> dict:
    row = {"model": model, "batch": batch, "accelerator": spec.profile.rsplit("/", 1)[-1].removesuffix(".toml"),
           "overrides": spec.overrides_text, "process_nm": spec.process_nm, "scaling": spec.scaling or ""}
    row.update(spec.overrides)
    return row


def plan_chunks(sweep: "Sweep", mi: int, bi: int, model_id: str, chunk: int = CHUNK):
    """The chunks of one model at one batch: each accelerator entry cut into ranges of
    ``chunk`` points (a chunk never spans two entries, so adding an entry, a model or a
    batch leaves every finished chunk as it was)."""
    model, batch = sweep.models[mi], sweep.batches[bi]
    group0 = (mi * len(sweep.batches) + bi) * len(sweep.accels)
    digests = sweep.entry_digests()
    first = min(FIRST_CHUNK, chunk)          # a small first chunk: the first rows come early
    for e, entry in enumerate(sweep.accels.entries):
        edges = [0] + list(range(min(first, len(entry)), len(entry), chunk)) + [len(entry)]
        for start, stop in zip(edges, edges[1:]):
            key = hashlib.sha256(json.dumps([__version__, model_id, model.name, batch, digests[e],
                                             start, stop, columns(sweep)]).encode()).hexdigest()[:32]
            yield ChunkTask(key, group0 + sweep.accels.offsets[e] + start, model.name, batch, entry,
                            start, stop)
