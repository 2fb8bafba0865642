"""Where the store is: ~/.pallet whichever folder a command runs in, PALLET_HOME when set, and named
by every message that finds no model there. Commands that only read make no store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pallet.errors import ModelNotFound
from pallet.store import Store

BIN = Path(sys.executable).parent

SAVE = """
import numpy as np, pallet
from sklearn.linear_model import LogisticRegression
x = np.arange(40, dtype=float).reshape(20, 2)
print(pallet.save(LogisticRegression().fit(x, (x[:, 0] > 20).astype(int)), "tiny", sample=x[:3]))
"""


def run(args, cwd, user, **env):
    """`args` in folder `cwd` for a user whose home folder is `user`, with no PALLET_ variable but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    return subprocess.run(args, cwd=cwd, env={**clean, "HOME": str(user), **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def folders(tmp_path):
    user, here, there = (tmp_path / name for name in ("user", "here", "there"))
    for folder in (user, here, there):
        folder.mkdir()
    return user, here, there


def test_the_default_store_is_the_users_whichever_folder_a_command_runs_in(folders):
    user, here, there = folders
    saved = run([str(BIN / "python"), "-c", SAVE], here, user)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == "tiny:1"
    listed = run([str(BIN / "pallet"), "models", "list"], there, user)
    assert listed.returncode == 0, listed.stderr
    assert "tiny" in listed.stdout
    assert (user / ".pallet" / "index.db").is_file() and (user / ".pallet" / "models" / "tiny" / "1").is_dir()
    assert not (here / ".pallet").exists() and not (there / ".pallet").exists()


def test_pallet_home_wins_over_the_users_store(folders):
    user, here, _ = folders
    saved = run([str(BIN / "python"), "-c", SAVE], here, user, PALLET_HOME=str(here / "team-store"))
    assert saved.returncode == 0, saved.stderr
    assert (here / "team-store" / "models" / "tiny" / "1").is_dir()
    assert not (user / ".pallet").exists()


def test_reading_commands_name_the_store_they_looked_in_and_make_none(folders):
    user, here, _ = folders
    store = user / ".pallet"
    listed = run([str(BIN / "pallet"), "models", "list"], here, user)
    assert listed.returncode == 0
    assert listed.stderr.strip() == (f"the store at {store} is empty: run 'pallet demo' "
                                     "or save a model with pallet.save(...)")
    as_json = run([str(BIN / "pallet"), "models", "list", "--json"], here, user)
    assert as_json.returncode == 0 and as_json.stdout.strip() == "[]"
    for args in (["models", "show", "digits"], ["models", "list", "digits"]):
        shown = run([str(BIN / "pallet"), *args], here, user)
        assert shown.returncode == 1
        assert shown.stderr.strip() == f"error: no model named 'digits' in the store at {store} (it is empty)"
    assert not store.exists() and not (here / ".pallet").exists()


def test_predict_and_batch_reads_name_the_store_they_looked_in_and_make_none(folders):
    user, here, _ = folders
    home = here / "fresh"  # PALLET_HOME names a folder that does not exist yet
    pallet = str(BIN / "pallet")
    predicted = run([pallet, "predict", "tiny", "--sample"], here, user, PALLET_HOME=str(home))
    assert predicted.returncode == 1
    assert predicted.stderr.strip() == f"error: no model named 'tiny' in the store at {home} (it is empty)"
    runs = run([pallet, "batch", "runs"], here, user, PALLET_HOME=str(home))
    assert runs.returncode == 0
    assert runs.stderr.strip() == f"no batch runs yet in the store at {home}: start one with 'pallet batch run'"
    as_json = run([pallet, "batch", "runs", "--json"], here, user, PALLET_HOME=str(home))
    assert as_json.returncode == 0 and as_json.stdout.strip() == "[]"
    shown = run([pallet, "batch", "show", "abc"], here, user, PALLET_HOME=str(home))
    assert shown.returncode == 1
    assert shown.stderr.strip() == f"error: no batch run 'abc' in the store at {home} (it is empty)"
    assert not home.exists() and not (user / ".pallet").exists() and not (here / ".pallet").exists()
    saved = run([str(BIN / "python"), "-c", SAVE], here, user, PALLET_HOME=str(home))
    assert saved.returncode == 0, saved.stderr
    predicted = run([pallet, "predict", "tiny", "--sample"], here, user, PALLET_HOME=str(home))
    assert predicted.returncode == 0 and '"model": "tiny:1"' in predicted.stdout
    runs = run([pallet, "batch", "runs", "-o", "out.db"], here, user, PALLET_HOME=str(home))
    assert runs.stderr.strip() == (f"no batch runs into {here / 'out.db'} yet in the store at {home}: "
                                   "start one with 'pallet batch run'")


def test_no_model_messages_name_an_index_kept_outside_the_store(folders):
    user, here, _ = folders
    index = f"sqlite:///{here / 'elsewhere.db'}"
    shown = run([str(BIN / "pallet"), "models", "show", "digits"], here, user, PALLET_HOME=str(here / "home"),
                PALLET_DB_URL=index)
    assert shown.returncode == 1
    assert f"no model named 'digits' in the store at {here / 'home'} (index {index}) (it is empty)" in shown.stderr


def test_a_database_index_is_named_without_its_password(tmp_path, postgres_url):
    with_password = postgres_url.replace("postgres@", "postgres:hunter2@", 1)
    store = Store(tmp_path / "home", with_password)
    with pytest.raises(ModelNotFound) as raised:
        store.resolve("nosuch")
    message = str(raised.value)
    assert f"no model named 'nosuch' in the store at {tmp_path / 'home'} (index postgresql+psycopg://postgres:***@" \
           in message
    assert "hunter2" not in message
