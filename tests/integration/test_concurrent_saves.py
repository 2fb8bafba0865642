"""Processes saving the same model name at once get distinct, complete versions."""

import multiprocessing as mp

import numpy as np
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.store import Store
from pallet.store.manifest import MANIFEST

SAVERS = 4


def _save_one(home: str, db_url: str, seed: int, start, results) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(30, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    store = Store(home, db_url)
    start.wait()
    results.put((seed, pallet.save(model, "shared", sample=x[:3], tags={"seed": str(seed)}, store=store).version))


def test_concurrent_saves_get_distinct_versions(tmp_path, db_url):
    home = str(tmp_path / "home")  # a new store: the processes also race to create its tables
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(SAVERS), ctx.Queue()
    procs = [ctx.Process(target=_save_one, args=(home, db_url, seed, start, results)) for seed in range(SAVERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    saved = dict(results.get(timeout=5) for _ in procs)
    assert sorted(saved.values()) == list(range(1, SAVERS + 1))

    store = Store(home, db_url)
    for seed, version in saved.items():
        v = store.resolve(f"shared:{version}")
        assert v.manifest.tags == {"seed": str(seed)}  # each row points at its own folder
        assert v.manifest.version == version
        assert (v.path / MANIFEST).is_file()
        v.verify()
    assert not list((tmp_path / "home" / "tmp").iterdir())
