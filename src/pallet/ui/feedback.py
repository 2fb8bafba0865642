"""Feedback on predictions: one row per rating, in the same SQL database as the model index."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pallet.errors import PalletError
from pallet.store.migrate import upgrade
from pallet.store.schema import feedback

RATINGS = ("up", "down")
COLUMNS = [c.name for c in feedback.columns]
FORMATS = ("csv", "parquet")


class FeedbackLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        upgrade(engine, what="feedback table")

    def add(self, *, model: str, version: int, request_id: str, inputs: dict, outputs: dict,
            rating: str | None = None, correct: str | None = None, comment: str | None = None) -> int:
        """Store one record; its id."""
        if rating is not None and rating not in RATINGS:
            raise PalletError(f"rating must be 'up', 'down' or absent, not {rating!r}")
        row = dict(created=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), model=model,
                   version=version, request_id=request_id, rating=rating, correct=correct, comment=comment,
                   inputs=json.dumps(inputs), outputs=json.dumps(outputs))
        with self.engine.begin() as conn:
            return conn.execute(feedback.insert().values(**row)).inserted_primary_key[0]

    def records(self, model: str, version: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The records of `model` (of one version, if given), oldest first; `limit` keeps the newest."""
        query = sa.select(feedback).where(feedback.c.model == model)
        if version is not None:
            query = query.where(feedback.c.version == version)
        query = query.order_by(feedback.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = [{str(key): value for key, value in r._mapping.items()} for r in conn.execute(query)]  # plain str keys
        for row in rows:
            row["inputs"], row["outputs"] = json.loads(row["inputs"]), json.loads(row["outputs"])
        return rows[::-1]

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per model: records, thumbs up and thumbs down, in all and per version (`versions`)."""
        query = (sa.select(feedback.c.model, feedback.c.version, feedback.c.rating, sa.func.count())
                 .group_by(feedback.c.model, feedback.c.version, feedback.c.rating))
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for model, version, rating, count in conn.execute(query):
                entry = found.setdefault(model, {"total": 0, "up": 0, "down": 0, "versions": {}})
                per_version = entry["versions"].setdefault(str(version), {"total": 0, "up": 0, "down": 0})
                for counted in (entry, per_version):
                    counted["total"] += count
                    if rating in RATINGS:
                        counted[rating] += count
        return found


def export(records: list[dict[str, Any]], path: str | Path, fmt: str) -> Path:
    """Write `records` to `path` as CSV or Parquet; inputs and outputs stay JSON text, one column each."""
    if fmt not in FORMATS:
        raise PalletError(f"unknown format '{fmt}'; use one of: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**r, "inputs": json.dumps(r["inputs"]), "outputs": json.dumps(r["outputs"])} for r in records]
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"id": pa.int64(), "version": pa.int64()}
        schema = pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path
