"""URLs as pallet prints and logs them: passwords hidden, everything else as given."""

import pytest

from pallet.urls import redact


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("postgresql://me:hunter2@db:5432/preds?table=t", "postgresql://me:***@db:5432/preds?table=t"),
    ("postgresql://me@db/preds", "postgresql://me@db/preds"),
    ("sqlite:///runs/a@b.db?table=t", "sqlite:///runs/a@b.db?table=t"),
    ("memory:100", "memory:100"),
    ("preds.parquet", "preds.parquet"),
    ("not a url @ all", "not a url @ all"),
])
def test_redact_hides_only_the_password(url, shown):
    assert redact(url) == shown
