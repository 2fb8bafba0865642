import os
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from pallet.store import Store

PG_URL = os.environ.get("PALLET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_reachable() -> str | None:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as e:  # any failure to connect means: skip, and say why
        return f"PostgreSQL not reachable at {PG_URL}: {type(e).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_base_url():
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def postgres_url(postgres_base_url):
    """A PostgreSQL URL whose tables live in a schema of their own, dropped afterwards."""
    schema = f"pallet_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    yield f"{postgres_base_url}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Each store test runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(tmp_path, db_url):
    return Store(tmp_path / "home", db_url)


@pytest.fixture(scope="session")
def digits():
    x, y = load_digits(return_X_y=True)
    return x, y


@pytest.fixture(scope="session")
def digits_model(digits):
    x, y = digits
    return LogisticRegression(max_iter=300).fit(x[:600], y[:600])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """PALLET_HOME in a fresh folder, for code that uses the default store."""
    path = tmp_path / "pallet-home"
    monkeypatch.setenv("PALLET_HOME", str(path))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    return path


def rows(n: int = 3, features: int = 64) -> np.ndarray:
    return np.arange(n * features, dtype=np.float64).reshape(n, features) % 17
