"""Alembic's environment for pallet's schema. `pallet.store.migrate` runs it in code, on a connection
it has opened (and locked) itself; there is no alembic.ini to keep."""

from alembic import context

from pallet.store.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=context.config.attributes.get("metadata"),
                  version_table=VERSION_TABLE)
with context.begin_transaction():  # the caller's transaction: nothing commits until it does
    context.run_migrations()
