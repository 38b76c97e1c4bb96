"""Step 3 of a sweep: chunks and their parts on disk. The points of one model at one
batch are cut into chunks of one accelerator entry (the unit of work and of the cache);
a finished chunk is one Parquet part, written atomically, and a line of ``index.jsonl``,
so a rerun costs only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass

from .._version import __version__
from ..errors import InputError
from .plan import run_chunk
from ..accelerator import load_accelerator
from .spec import AccelEntry, AccelSpec, Sweep, accelerator_label, columns, profile_source

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
    sha256: str = ""         # of the part's bytes, as written


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
            try:
                return pafs.FileSystem.from_uri(self.root)
            except Exception as e:  # noqa: BLE001 - pyarrow's own errors for a bad URI
                raise InputError(f"the sweep cache {self.root} is not a location pyarrow can "
                                 f"open ({' '.join(str(e).split())[:160]}); give a local folder or "
                                 "a URI such as s3://bucket/prefix") from None
        return pafs.LocalFileSystem(), os.path.abspath(self.root)

    def prepare(self) -> None:
        index = os.path.join(self.root, "index.jsonl")
        if not self.uri and os.path.isdir(index):
            raise InputError(f"the sweep cache index {index} is a folder, not a file: remove it "
                             "(the chunks are recomputed) or give another --cache")
        try:
            if not self.arrow:
                os.makedirs(self.root, exist_ok=True)
                return
            fs, base = self._fs()
            fs.create_dir(base, recursive=True)
        except OSError as e:
            raise InputError(f"cannot create the sweep cache {self.root}: {e.strerror or e}") from None

    def schema(self):
        import pyarrow as pa
        kinds = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
        return pa.schema([(c, kinds[self.types.get(c, "float")]) for c in self.columns])

    def write(self, key: str, rows: list[dict]) -> None:
        """A chunk's rows as one Parquet part, atomically."""
        if not self.arrow:
            data = "".join(json.dumps({c: r.get(c) for c in self.columns}) + "\n"
                           for r in rows).encode("utf-8")
            tmp = f"{self._jsonl(key)}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self._jsonl(key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return hashlib.sha256(data).hexdigest()
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self.schema()
        table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows], schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        fs, base = self._fs()
        tmp = f"{base}/.{key}.{os.getpid()}.tmp"
        try:
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            fs.move(tmp, f"{base}/{key}.parquet")
        except BaseException:
            with contextlib.suppress(Exception):
                fs.delete_file(tmp)
            raise
        return hashlib.sha256(data).hexdigest()

    def part_path(self, key: str) -> str:
        if not self.arrow:
            return self._jsonl(key)
        return f"{self.root.rstrip('/')}/{key}.parquet"

    def digest(self, key: str) -> str | None:
        """SHA-256 of a part's bytes as they are now (None if it cannot be read)."""
        try:
            if not self.arrow:
                with open(self._jsonl(key), "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest()
            fs, base = self._fs()
            with fs.open_input_stream(f"{base}/{key}.parquet") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except Exception:  # noqa: BLE001 - unreadable: it does not verify
            return None

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
                key, sha = item["key"], item.get("sha256", "")
                if isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key) \
                        and isinstance(sha, str) and len(sha) == 64 \
                        and all(isinstance(item[k], int) and not isinstance(item[k], bool)
                                and item[k] >= 0 for k in ("rows", "ok", "failed")) \
                        and item["ok"] + item["failed"] == item["rows"]:
                    done[key] = item
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
                continue                  # a line cut short, or not ours: that chunk reruns
        return done

    def verified(self, key: str, item: dict, rows: int) -> str | None:
        """Why a finished chunk of the index cannot be served (None when it can): it must
        hold the task's number of rows and its part the bytes the index recorded."""
        if item.get("rows") != rows:
            return f"the index says {item.get('rows')} rows for a chunk of {rows}"
        if not self.exists(key):
            return "its part is missing"
        if self.digest(key) != item.get("sha256"):
            return "its part is damaged or was replaced (content hash differs)"
        return None

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
        index = os.path.join(self.root, "index.jsonl")
        try:
            with open(index, "a", encoding="utf-8") as f:
                for ref in refs:
                    f.write(json.dumps({"key": ref.key, "rows": ref.rows, "ok": ref.ok,
                                        "failed": ref.failed, "sha256": ref.sha256}) + "\n")
                f.flush()
        except OSError as e:
            raise InputError(f"cannot write the sweep cache index {index}: {e.strerror or e}") from None


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
    try:
        digest = parts.write(task.key, rows)
    except OSError as e:          # a full disk, a read-only folder, a file-size limit
        raise InputError(f"cannot write the sweep part {parts.part_path(task.key)}: "
                         f"{e.strerror or e}; the chunks finished so far are kept") from None
    failed = sum(r["status"] != "ok" for r in rows)
    return ChunkRef(task.key, task.point0, len(rows), len(rows) - failed, failed, digest or "")


def _identity(model: str, batch, spec: AccelSpec) -> dict:
    row = {"model": model, "batch": batch, "accelerator": accelerator_label(spec.profile),
           "overrides": spec.overrides_text, "process_nm": spec.process_nm, "scaling": spec.scaling or "",
           "accelerator_source": _source(spec.profile)}
    row.update(spec.overrides)
    return row


_SOURCES: dict = {}


def _source(profile: str) -> str:
    hit = _SOURCES.get(profile)
    if hit is None:
        hit = _SOURCES[profile] = profile_source(load_accelerator(profile))
    return hit


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
