"""The store's tables as pallet 0.1.0 created them: index, feedback, rollouts, batch runs.

Databases made before migrations existed hold some of these tables already (each was created
when first used) and no version table: those are kept as they are and the missing ones created,
so every database leaves this revision with the same schema.
"""

import sqlalchemy as sa
from alembic import op

revision = "store_0001"
down_revision = None
branch_labels = ("store",)
depends_on = None


def tables() -> list[tuple[str, list, list[tuple[str, list[str]]]]]:
    """Each table: its name, its columns and its indexes (name, columns)."""
    return [
        ("pallet_versions", [
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("created", sa.String(40), nullable=False),
            sa.Column("framework", sa.String(64), nullable=False),
            sa.Column("runtime", sa.String(64), nullable=False),
            sa.Column("size_bytes", sa.BigInteger, nullable=False),
            sa.Column("metrics", sa.Text, nullable=False),
            sa.Column("tags", sa.Text, nullable=False),
        ], []),
        ("pallet_removed_versions", [
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
        ], []),
        ("pallet_aliases", [
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("alias", sa.String(64), primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("updated", sa.String(40), nullable=False),
        ], []),
        ("pallet_feedback", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created", sa.String(40), nullable=False),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("rating", sa.String(8)),
            sa.Column("correct", sa.Text),
            sa.Column("comment", sa.Text),
            sa.Column("inputs", sa.Text, nullable=False),
            sa.Column("outputs", sa.Text, nullable=False),
        ], [("ix_pallet_feedback_model", ["model"])]),
        ("pallet_rollouts", [
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("revision", sa.Integer, nullable=False),
            sa.Column("record", sa.Text, nullable=False),
            sa.Column("updated", sa.String(40), nullable=False),
        ], []),
        ("pallet_rollout_events", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("revision", sa.Integer, nullable=False),
            sa.Column("time", sa.String(40), nullable=False),
            sa.Column("actor", sa.String(200), nullable=False),
            sa.Column("action", sa.String(40), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("weights", sa.Text, nullable=False),
        ], [("ix_pallet_rollout_events_name", ["name"])]),
        ("pallet_rollout_figures", [
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("revision", sa.Integer, primary_key=True),
            sa.Column("process", sa.String(200), primary_key=True),
            sa.Column("version", sa.String(40), primary_key=True),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("updated", sa.Float, nullable=False),
        ], []),
        ("batch_runs", [
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("model_ref", sa.String(200), nullable=False),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("input", sa.Text, nullable=False),
            sa.Column("output", sa.Text, nullable=False),
            sa.Column("started", sa.String(40), nullable=False),
            sa.Column("finished", sa.String(40)),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("rows_read", sa.BigInteger, nullable=False),
            sa.Column("rows_written", sa.BigInteger, nullable=False),
            sa.Column("rows_rejected", sa.BigInteger, nullable=False),
            sa.Column("error", sa.Text),
            sa.Column("options", sa.Text, nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
        ], [("ix_batch_runs_output", ["output"])]),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns, indexes in tables():
        if name in existing:
            continue
        op.create_table(name, *columns)
        for index, on in indexes:
            op.create_index(index, name, on)


def downgrade() -> None:
    for name, _, _ in reversed(tables()):
        op.drop_table(name)
