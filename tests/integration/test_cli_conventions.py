"""The CLI's conventions: -h everywhere, --version, help printed as written, one meaning per option name,
one default image, a thread line whose arithmetic holds, a warning when serving beyond loopback without a key,
and `pallet fits` whose conclusion agrees with its table."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from pallet import save
from pallet.cli import app
from pallet.deploy.bundle import IMAGE, Scale
from pallet.export.data import split
from pallet.net import free_port, wait_ready
from pallet.serve.server import exposure_warning, loopback_only
from pallet.settings import ServeConfig
from pallet.store import Store
from pallet.threads import ThreadPlan

PALLET = os.path.join(os.path.dirname(sys.executable), "pallet")


def commands(command=None, path: tuple[str, ...] = ()):
    """Every command and group of the tree, with the words that reach it."""
    command = command or typer.main.get_command(app)
    yield path, command
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


def options(command):
    """Each option's names (long and short) with its help."""
    for param in command.params:
        if param.param_type_name == "option":
            yield [*param.opts, *param.secondary_opts], param.help or ""


def env_without_store(**extra):
    return {**{k: v for k, v in os.environ.items() if k not in ("PALLET_DB_URL", "PALLET_HOME")}, **extra}


def test_dash_h_prints_the_same_help_as_dash_dash_help_for_every_command():
    runner = CliRunner()
    seen = 0
    for path, _ in commands():
        short, long = runner.invoke(app, [*path, "-h"]), runner.invoke(app, [*path, "--help"])
        assert short.exit_code == 0 and short.output.startswith("Usage: "), (path, short.output)
        assert short.output == long.output, path
        seen += 1
    assert seen > 30  # the whole tree was walked: groups and their commands


def test_help_text_prints_as_written_brackets_and_all():
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "-h"]).output
    assert "pallet[torch]" in demo  # rich markup used to swallow "[torch]"
    build = " ".join(runner.invoke(app, ["build", "-h"]).output.split())
    assert "[default: 8000]" in build and "\\[" not in build
    serve = " ".join(runner.invoke(app, ["serve", "-h"]).output.split())
    assert "[1<=x<=65535]" in serve and "[default: 127.0.0.1]" in serve and "\\[" not in serve


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_pallet_the_store_and_its_index_and_creates_nothing(tmp_path, flag):
    home = tmp_path / "no-store-here"
    done = subprocess.run([PALLET, flag], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env_without_store(PALLET_HOME=str(home),
                                                PALLET_DB_URL="postgresql://pallet:hunter2@db.example/pallet"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"pallet \d+\.\d+\.\d+\S*", lines[0])
    assert lines[1].split() == ["store", str(home)]
    assert lines[2].split()[0] == "index" and "db.example/pallet" in lines[2] and "hunter2" not in done.stdout
    assert not home.exists() and list(tmp_path.iterdir()) == []  # no store was made, here or there
    sqlite = subprocess.run([PALLET, flag], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=env_without_store(PALLET_HOME=str(home)))
    assert sqlite.stdout.splitlines()[2].split() == ["index", f"sqlite:///{home}/index.db"]


def test_each_option_name_means_one_thing_across_commands():
    """--to: a version (rollout only). --out: a folder of files the command writes. --output: where a command's
    results go (a batch's predictions, a feedback file). -o is one option per command."""
    to_users, out_helps, both = [], {}, []
    for path, command in commands():
        names = {name: help for opts, help in options(command) for name in opts}
        if "--to" in names:
            to_users.append(path)
        if "--out" in names:
            out_helps[" ".join(path)] = names["--out"]
        if "--out" in names and "--output" in names:
            both.append(path)
            short = next(opts for opts, _ in options(command) if "--out" in opts)
            assert short == ["--out"], path  # -o stays with the results, not the files written beside them
        shorts = [name for opts, _ in options(command) for name in opts if name == "-o"]
        assert len(shorts) <= 1, path
    assert both == [("batch", "schedule")]  # the predictions' --output, and --out for the files it writes
    assert to_users and all(path[0] == "rollout" for path in to_users), to_users
    assert {"export", "build", "batch schedule"} <= set(out_helps)
    for where, help in out_helps.items():
        assert "folder" in help.lower(), (where, help)  # --out always names a folder written to
    export = dict((opts[0], opts) for opts, _ in options(dict(commands())[("export",)]))
    assert export["--format"] == ["--format", "-f"]


def test_build_and_batch_schedule_default_to_the_image_build_makes():
    tree = dict(commands())
    defaults = {path: next(p.default for p in tree[path].params if p.name == "image")
                for path in [("build",), ("batch", "schedule")]}
    assert set(defaults.values()) == {IMAGE} == {Scale().image} and IMAGE == "pallet-bundle:latest"


@pytest.mark.parametrize(("plan", "line"), [
    (ThreadPlan(workers=4, cores=2, threads=1, chosen=False), "4 workers x 1 thread = 4 threads on 2 cores"),
    (ThreadPlan(workers=1, cores=8, threads=8, chosen=False), "1 worker x 8 threads = 8 threads on 8 cores"),
    (ThreadPlan(workers=2, cores=8, threads=4, chosen=False), "2 workers x 4 threads = 8 threads on 8 cores"),
    (ThreadPlan(workers=2, cores=2, threads=3, chosen=True), "2 workers x 3 threads = 6 threads on 2 cores"),
])
def test_the_thread_line_is_arithmetic_that_holds(plan, line):
    text = plan.describe()
    assert text.startswith(line)
    workers, threads, total, cores = map(int, re.findall(r"(\d+) (?:worker|thread|core)", text))
    assert workers * threads == total and cores == plan.cores
    oversubscribed = total > plan.cores
    assert ("more threads than cores" in text) == oversubscribed and "<=" not in text
    assert ("as asked (--threads)" in text) == plan.chosen


def test_only_loopback_hosts_count_as_this_machine_alone():
    assert all(loopback_only(h) for h in ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost", "LOCALHOST"])
    assert not any(loopback_only(h) for h in ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com"])


def test_serving_beyond_loopback_without_a_key_warns_once_on_stderr(tmp_path, monkeypatch):
    monkeypatch.delenv("PALLET_API_KEY", raising=False)
    assert exposure_warning(ServeConfig(models=["m"], host="127.0.0.1")) is None
    warning = exposure_warning(ServeConfig(models=["m"], host="0.0.0.0", port=9000))
    assert "anyone who reaches port 9000 can load models and change traffic" in warning
    assert "PALLET_API_KEY" in warning and "\n" not in warning
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    assert exposure_warning(ServeConfig(models=["m"], host="0.0.0.0")) is None

    store = Store(tmp_path / "home")
    x = np.random.default_rng(0).normal(size=(40, 4))
    save(LogisticRegression().fit(x, x[:, 0] > 0), "tiny", sample=x[:3], store=store)
    port = free_port()
    env = {**env_without_store(PALLET_HOME=str(store.home))}
    env.pop("PALLET_API_KEY", None)
    proc = subprocess.Popen([PALLET, "serve", "tiny", "--host", "0.0.0.0", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "without PALLET_API_KEY" in warnings[0] and f"port {port}" in warnings[0]
    thread_line = next(line for line in out.splitlines() if line.strip().startswith("threads"))
    workers, threads, total, _ = map(int, re.findall(r"(\d+) (?:worker|thread|core)", thread_line))
    assert workers * threads == total


@pytest.fixture(scope="module")
def fits_store(tmp_path_factory):
    from pallet.nets import fit_classifier

    store = Store(tmp_path_factory.mktemp("fits") / "home")
    x, y = split("digits", "train")
    x_test, _ = split("digits", "test")
    save(LogisticRegression(max_iter=500).fit(x, y), "digits", sample=x_test[:5],
         tags={"dataset": "sklearn:digits"}, store=store)
    mlp = fit_classifier(x[:400], y[:400], list(range(10)), [256], epochs=2)
    save(mlp, "mlp", sample=x_test[:5].astype(np.float32), tags={"dataset": "sklearn:digits"}, store=store)
    return store


def fits(store, *args, cwd=None):
    return subprocess.run([PALLET, "fits", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=env_without_store(PALLET_HOME=str(store.home)))


def variant_rows(stdout: str) -> dict[str, str]:
    """The variants table's rows: variant -> its 'fits' cell."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 5 and cells[0] in ("float32", "int8", "fp16"):
            rows[cells[0]] = cells[4]
    return rows


def test_fits_marks_no_variant_yes_when_no_format_the_device_runs_carries_the_model(fits_store):
    done = fits(fits_store, "digits", "--device", "phone")
    assert done.returncode == 1
    rows = variant_rows(done.stdout)
    assert rows and not any(cell.startswith("yes") for cell in rows.values()), done.stdout
    assert "carries this model" in rows["float32"]
    assert done.stderr.strip().splitlines()[-1] == "error: digits:1 does not fit phone: no format carries it"


def test_fits_names_the_one_variant_that_fits_and_the_format_that_carries_it(fits_store, tmp_path):
    from pallet.export.devices import Device, fits as judge

    roomy = Device("roomy", "anything", 2**30, 1e6, 1.0, ("web",))
    sizes = {c.variant: c.size_bytes for c in judge(fits_store, "mlp", roomy).candidates}
    assert sizes["int8"] < sizes["fp16"] < sizes["float32"]
    (tmp_path / "pallet.yaml").write_text(yaml.safe_dump({"devices": {"kiosk": {
        "description": "a kiosk page", "max_size": sizes["int8"] + 1, "max_latency_ms": 10_000, "formats": ["web"]}}}))
    done = fits(fits_store, "mlp", "--device", "kiosk", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = variant_rows(done.stdout)
    assert rows["int8"] == "yes: web" and rows["float32"].startswith("no:") and rows["fp16"].startswith("no:")
    assert done.stdout.strip().splitlines()[-1] == "mlp:1 fits kiosk: int8 as web"
    phone = fits(fits_store, "mlp", "--device", "phone", "--json")
    verdict = yaml.safe_load(phone.stdout)
    fitting = [c["variant"] for c in verdict["candidates"] if c["fits"]]
    assert fitting == ["float32"]  # the phone formats are traced from the torch model: float32 only
    assert verdict["verdict"] == "mlp:1 fits phone: float32 as tflite, executorch, coreml"
    int8 = next(c for c in verdict["candidates"] if c["variant"] == "int8")
    assert any("exported in float32 only" in reason for reason in int8["reasons"])
