"""Where batch input comes from: CSV or Parquet files and folders, or a SQL table or query.

Every source yields the same thing: pyarrow tables of exactly `size` rows (the last one may be
shorter), in the same order every time, so a resumed run skips exactly the rows it has done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from pallet.csv_reader import read_batches, read_header
from pallet.errors import PalletError, first_line
from pallet.store.database import make_engine
from pallet.urls import redact

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class Source:
    description: str
    columns: list[str]
    total_rows: int | None = None

    def fingerprint(self) -> str:
        """What identifies this exact input; a resumed run refuses an input that changed."""
        raise NotImplementedError

    def batches(self, size: int) -> Iterator[pa.RecordBatch | pa.Table]:
        raise NotImplementedError

    def chunks(self, size: int, skip: int = 0) -> Iterator[pa.Table]:
        """Tables of `size` rows, after the first `skip` rows."""
        pending: list[pa.Table] = []
        held = 0
        for batch in self.batches(size):
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            if skip:
                dropped = min(skip, table.num_rows)
                table, skip = table.slice(dropped), skip - dropped
            if not table.num_rows:
                continue
            pending.append(table)
            held += table.num_rows
            while held >= size:
                whole = pa.concat_tables(pending)
                yield whole.slice(0, size)
                rest = whole.slice(size)
                pending, held = ([rest] if rest.num_rows else []), rest.num_rows
        if held:
            yield pa.concat_tables(pending)


class FileSource(Source):
    def __init__(self, path: Path):
        self.description = str(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith(("_", ".")))
            if not files:
                raise PalletError(f"input folder {path} holds no .csv or .parquet files")
        elif path.exists():
            if path.suffix.lower() not in SUFFIXES:
                raise PalletError(f"input {path}: pallet reads .csv and .parquet files (or a folder of them)")
            files = [path]
        else:
            raise PalletError(f"input {path} does not exist")
        kinds = {SUFFIXES[p.suffix.lower()] for p in files}
        if len(kinds) > 1:
            raise PalletError(f"input folder {path} mixes CSV and Parquet files; keep one kind per folder")
        self.kind, self.files = kinds.pop(), files
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                metas = [pq.ParquetFile(f) for f in files]
                self.columns = metas[0].schema_arrow.names
                for f, meta in zip(files[1:], metas[1:]):
                    if not meta.schema_arrow.equals(metas[0].schema_arrow):
                        raise PalletError(f"input {f} has other columns or types than {files[0]}")
                self.total_rows = sum(m.metadata.num_rows for m in metas)
            else:
                self.columns = read_header(files[0])
                self.total_rows = sum(_count_lines(f) - 1 for f in files)
        except (OSError, pa.ArrowException) as e:
            raise PalletError(f"cannot read input {files[0]}: {e}") from None
        for f in files[1:] if self.kind == "csv" else []:
            if read_header(f) != self.columns:
                raise PalletError(f"input {f} has other columns than {files[0]}")

    def fingerprint(self) -> str:
        return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in self.files)

    def batches(self, size: int):
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            for f in self.files:
                yield from pq.ParquetFile(f).iter_batches(batch_size=size)
            return
        # Every column as text: values are converted (and bad ones rejected) row by row later,
        # so one odd value cannot stop the reader halfway.
        for f in self.files:
            yield from read_batches(f, self.columns)


class SqlSource(Source):
    """`sqlite:///f.db?table=t` or `postgresql://...?query=SELECT ...` (a table is read in key order)."""

    def __init__(self, spec: str, key: list[str]):
        url, params = split_url(spec, ("table", "query"))
        table, query = params.get("table"), params.get("query")
        if bool(table) == bool(query):
            raise PalletError(f"input {redact(spec)}: add ?table=NAME or ?query=SELECT ... to the database URL")
        if not key:
            raise PalletError(f"input {redact(spec)}: a SQL input needs --key: rows are read in key order, so a "
                              "resumed run skips exactly the rows it has done")
        inner = f"SELECT * FROM {quote(table)}" if table else query
        self.query = f"SELECT * FROM ({inner}) AS pallet_input ORDER BY {', '.join(quote(k) for k in key)}"
        query = inner
        self.description = redact(spec)
        self.engine = make_engine(url, "input database", wal=False)
        try:
            with self.engine.connect() as conn:
                result = conn.exec_driver_sql(f"SELECT * FROM ({query}) AS pallet_input LIMIT 0")
                self.columns = list(result.keys())
                self.total_rows = conn.exec_driver_sql(f"SELECT count(*) FROM ({query}) AS pallet_input").scalar()
        except sa.exc.DBAPIError as e:
            raise PalletError(f"input {self.description}: {first_line(e.orig)}") from None

    def fingerprint(self) -> str:
        return f"rows:{self.total_rows}"  # a database cannot say more cheaply; the key order does the rest

    def batches(self, size: int):
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=size).exec_driver_sql(self.query)
            for rows in result.partitions(size):
                columns = list(zip(*rows)) if rows else [[] for _ in self.columns]
                yield pa.table({name: _array(values) for name, values in zip(self.columns, columns)})


def normalize(spec: str) -> str:
    """A location that means the same from any folder: absolute file paths and SQLite files."""
    if "://" not in spec:
        return str(Path(spec).expanduser().absolute())
    if spec.startswith("sqlite:///") and not spec.startswith("sqlite:////") and not spec.startswith("sqlite:///:memory:"):
        rest = spec[len("sqlite:///"):]
        path, sep, query = rest.partition("?")
        return f"sqlite:///{Path(path).absolute()}{sep}{query}"
    return spec


def _array(values) -> pa.Array:
    """A SQL column's values; mixed types (SQLite allows them) become text, and bad values become rejects."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def open_source(spec: str, key: list[str] = ()) -> Source:
    if "://" in spec:
        return SqlSource(spec, list(key))
    return FileSource(Path(spec))


def split_url(spec: str, names: tuple[str, ...]) -> tuple[sa.URL, dict[str, str]]:
    """A database URL without pallet's own query parameters, and those parameters."""
    try:
        url = sa.make_url(spec)
    except sa.exc.ArgumentError:
        raise PalletError(f"'{redact(spec)}' is not a database URL (e.g. sqlite:///preds.db?table=t)") from None
    params = {n: url.query[n] for n in names if n in url.query}
    params = {n: v if isinstance(v, str) else v[-1] for n, v in params.items()}
    return url.difference_update_query(names), params


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count_lines(path: Path) -> int:
    """Newlines in a file, read in blocks (for the progress bar's total)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


