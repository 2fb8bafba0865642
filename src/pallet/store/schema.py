"""pallet's own SQL tables, all of them, in two groups.

`metadata`: the store's database (`PALLET_DB_URL`): the model index, feedback, rollout state and
batch run records. `checkpoint_metadata`: the one table pallet keeps in a batch run's output
database, beside the user's tables (which are not pallet's schema).

These are the tables as the code uses them now. Their history, which turns any earlier database
into this, is the migrations in `pallet/store/migrations/versions/`: a change here needs a new
revision there (tests/integration/test_migrations.py compares the two).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# The model index: versions and aliases.
versions = sa.Table(
    "pallet_versions", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("framework", sa.String(64), nullable=False),
    sa.Column("runtime", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
)

# Removed versions keep their number taken, so `name:3` never names two different models.
removed = sa.Table(
    "pallet_removed_versions", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
)

aliases = sa.Table(
    "pallet_aliases", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
)

# Feedback on predictions: one row per rating.
feedback = sa.Table(
    "pallet_feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("rating", sa.String(8)),         # "up", "down" or none
    sa.Column("correct", sa.Text),             # the answer the user says is right
    sa.Column("comment", sa.Text),
    sa.Column("inputs", sa.Text, nullable=False),   # JSON: {input name: rows}
    sa.Column("outputs", sa.Text, nullable=False),  # JSON: {output name: rows}
)

# Rollouts: the current one of each served name, its history, and each server process's figures.
rollouts = sa.Table(
    "pallet_rollouts", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("record", sa.Text, nullable=False),     # JSON: policy, stable, previous, canary
    sa.Column("updated", sa.String(40), nullable=False),
)

rollout_events = sa.Table(
    "pallet_rollout_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),    # JSON: the traffic shares after the change
)

rollout_figures = sa.Table(
    "pallet_rollout_figures", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("process", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(40), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

# Batch runs: one row per run.
batch_runs = sa.Table(
    "batch_runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model_ref", sa.String(200), nullable=False),     # as asked, e.g. digits@production
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),           # what it resolved to
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("output", sa.Text, nullable=False, index=True),
    sa.Column("started", sa.String(40), nullable=False),
    sa.Column("finished", sa.String(40)),
    sa.Column("status", sa.String(16), nullable=False),         # running, succeeded, failed
    sa.Column("rows_read", sa.BigInteger, nullable=False, default=0),
    sa.Column("rows_written", sa.BigInteger, nullable=False, default=0),
    sa.Column("rows_rejected", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("options", sa.Text, nullable=False, default="{}"),  # JSON: what resume needs to run it again
    sa.Column("summary", sa.Text, nullable=False, default="{}"),  # JSON: output distributions, for drift checks
)

checkpoint_metadata = sa.MetaData()

# In a SQL output database: how far each unfinished run got (a JSON Checkpoint), committed with each chunk.
batch_checkpoints = sa.Table(
    "pallet_batch_checkpoints", checkpoint_metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
)
