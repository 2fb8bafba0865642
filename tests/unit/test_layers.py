"""The import contracts in pyproject.toml ([tool.importlinter]): layers only point down, the store runs no
model, runtimes know no store, batch never imports the server, ui and rollout import no web framework.
And no hidden global effects: importing a runtime leaves the process's warnings filters alone."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_scikit_learn_runtime_filters_warnings_only_around_its_own_predict_call():
    # In a fresh process, with scikit-learn (and what it imports) loaded first: only pallet's effects count.
    code = (
        "import warnings\n"
        "import numpy as np, pandas as pd, joblib, sklearn.linear_model\n"
        "before = list(warnings.filters)\n"
        "from pallet.runtimes.sklearn import SklearnRuntime\n"
        "assert warnings.filters == before, 'importing the runtime changed the filters'\n"
        "x = pd.DataFrame({'a': [0.0, 1.0, 2.0, 3.0], 'b': [1.0, 0.0, 1.0, 0.0]})\n"
        "runtime = SklearnRuntime(sklearn.linear_model.LogisticRegression().fit(x, [0, 0, 1, 1]))\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    runtime.predict({'input': x.to_numpy()})\n"
        "assert not [str(w.message) for w in seen], [str(w.message) for w in seen]\n"
        "assert warnings.filters == before, 'predict left a filter behind'\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    sklearn.linear_model.LogisticRegression().fit(x, [0, 0, 1, 1]).predict(x.to_numpy())\n"
        "assert any('valid feature names' in str(w.message) for w in seen), 'scikit-learn itself still warns'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
