"""The checkpoint table pallet keeps in a batch run's SQL output database, in the very words
pallet 0.1.0 created it with; a database that has it already (and no version table) keeps it."""

from alembic import op

revision = "checkpoints_0001"
down_revision = None
branch_labels = ("checkpoints",)
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE IF NOT EXISTS pallet_batch_checkpoints (run_id VARCHAR(32) PRIMARY KEY, "
               "state TEXT NOT NULL)")


def downgrade() -> None:
    op.drop_table("pallet_batch_checkpoints")
