"""`pallet build` bundles and `pallet serve --bundle`: real files, hadolint, Kubernetes schemas, a real server."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import yaml
from typer.testing import CliRunner

from pallet.cli import app
from pallet.net import free_port, wait_ready
from pallet.demo import train_demo_models
from pallet.deploy.bundle import build, load_config
from pallet.errors import IntegrityError, PalletError
from pallet.store import Store

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("build") / "home")
    train_demo_models(store, torch_models=())
    return store


@pytest.fixture(scope="module")
def bundle(store, tmp_path_factory):
    return build(["digits@production", "iris"], tmp_path_factory.mktemp("out") / "bundle", store=store)


def test_bundle_holds_models_lock_config_and_targets(bundle, store):
    files = set(bundle.files)
    assert {"pallet.yaml", "requirements.lock", "Dockerfile", ".dockerignore", "store/index.db",
            "kubernetes/deployment.yaml", "kubernetes/kustomization.yaml"} <= files
    assert any(f.startswith("wheels/pallet-") and f.endswith(".whl") for f in files)
    assert yaml.safe_load((bundle.path / "pallet.yaml").read_text())["models"] == ["digits:1", "iris:1"]
    assert bundle.size_bytes == sum(f.stat().st_size for f in bundle.path.rglob("*") if f.is_file())
    assert bundle.largest[0][1] >= bundle.largest[-1][1]
    copied = Store(bundle.path / "store", db_url=f"sqlite:///{bundle.path / 'store' / 'index.db'}")
    for ref in ("digits:1", "iris:1"):
        copied.resolve(ref).verify()  # the sha256 of every file still matches


def test_lock_pins_what_serving_needs_and_nothing_else(bundle, store):
    pins = dict(line.split("==") for line in (bundle.path / "requirements.lock").read_text().splitlines()
                if line and not line.startswith("#"))
    manifest = store.resolve("digits").manifest
    assert pins["scikit-learn"] == manifest.packages["scikit-learn"] and "numpy" in pins
    assert {"starlette", "uvicorn", "httptools", "orjson", "sqlalchemy"} <= set(pins)  # uvicorn[standard] included
    assert not {"pytest", "playwright", "ray", "matplotlib", "kubernetes-validate", "pallet"} & set(pins)


def test_no_absolute_path_of_this_machine_in_the_bundle(bundle, store):
    needles = [str(store.home).encode(), str(ROOT).encode(), str(bundle.path).encode(), os.path.expanduser("~").encode() + b"/"]
    for path in bundle.path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"{path} holds a path of this machine"


def test_dockerfile_passes_hadolint_and_manifests_pass_the_kubernetes_schemas(bundle):
    import kubernetes_validate

    done = subprocess.run([str(BIN / "hadolint"), str(bundle.path / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout
    dockerfile = (bundle.path / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/v2/health/ready" in dockerfile and "EXPOSE 8000" in dockerfile
    assert '"--host", "0.0.0.0"' in dockerfile  # reachable from outside the container
    assert dockerfile.index("requirements.lock") < dockerfile.index("store/")  # dependencies cached before models
    kinds = set()
    for path in sorted((bundle.path / "kubernetes").glob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            if manifest["kind"] != "Kustomization":
                kubernetes_validate.validate(manifest, "1.30", strict=True)
            kinds.add(manifest["kind"])
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Kustomization",
                     "CronJob"}
    batch = list(yaml.safe_load_all((bundle.path / "kubernetes" / "batch-digits.yaml").read_text()))
    command = batch[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["pallet", "batch", "run", "digits:1"] and "$(BATCH_INPUT)" in command
    assert all(doc["spec"]["suspend"] is True for doc in batch)
    deployment = yaml.safe_load((bundle.path / "kubernetes" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {"name": "grpc", "containerPort": 8001} in container["ports"]
    assert container["livenessProbe"]["grpc"]["port"] == 8001
    service = yaml.safe_load((bundle.path / "kubernetes" / "service.yaml").read_text())
    assert {"name": "grpc", "port": 8001, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"} in \
        service["spec"]["ports"]
    assert "EXPOSE 8000 8001" in (bundle.path / "Dockerfile").read_text()
    nginx = (bundle.path / "nginx.conf").read_text()
    assert "listen 8081 http2;" in nginx and "grpc_pass grpc://pallet_grpc;" in nginx
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


def test_serve_bundle_serves_exactly_what_it_holds(bundle, tmp_path):
    port = free_port()
    env = {**os.environ, "PALLET_HOME": str(tmp_path / "elsewhere")}
    env.pop("PALLET_DB_URL", None)
    grpc_port = free_port()
    proc = subprocess.Popen([str(BIN / "pallet"), "serve", "--bundle", str(bundle.path), "--port", str(port),
                             "--grpc-port", str(grpc_port), "--no-access-log"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == 0
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:  # and over gRPC
            rows = triton_grpc.InferInput("input", [1, 4], "FP64")
            rows.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]]))
            assert client.infer("iris", [rows]).as_numpy("label").tolist() == [0]
        index = httpx.get(f"http://127.0.0.1:{port}/v2/repository/index").json()
        assert {(m["name"], m["version"]) for m in index} == {("digits", "1"), ("iris", "1")}
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_build_and_bundle_mistakes_are_one_line(store, tmp_path, monkeypatch):
    with pytest.raises(PalletError, match="is named twice"):
        build(["digits", "digits:1"], tmp_path / "b", store=store)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(PalletError, match="holds files that are not a pallet bundle"):
        build(["iris"], tmp_path / "mine", store=store)
    assert (tmp_path / "mine" / "notes.txt").exists()
    (tmp_path / "mine" / "pallet.yaml").write_text("models: [iris:1]\n")  # a config alone is not a bundle
    with pytest.raises(PalletError, match="holds files that are not a pallet bundle"):
        build(["iris"], tmp_path / "mine", store=store)
    assert (tmp_path / "mine" / "notes.txt").exists()
    for text, message in [("models: [iris:1]\nserve: [1]\n", "'serve' must be a mapping"),
                          ("models: [iris:1]\nserve: {port: abc}\n", "serve.port must be a positive whole number"),
                          ("models: [iris:1]\nserve: {max_rows: null}\n", "serve.max_rows must be"),
                          ("models: [1]\n", "'models' must list model references")]:
        (tmp_path / "mine" / "pallet.yaml").write_text(text)
        with pytest.raises(PalletError, match=message):
            load_config(tmp_path / "mine")
    (tmp_path / "mine" / "pallet.yaml").unlink()
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.setenv("PALLET_DB_URL", store.db_url)
    for args, message in [(["build", "nosuch", "-o", str(tmp_path / "x")], "no model named 'nosuch'"),
                          (["serve", "--bundle", str(tmp_path / "mine")], "is not a pallet bundle"),
                          (["serve", "iris", "--bundle", str(tmp_path / "mine")], "a bundle names its own models")]:
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_tampered_model_is_not_bundled(store, tmp_path):
    source = Store(tmp_path / "home")
    train_demo_models(source, torch_models=())
    weights = source.resolve("iris").path / "model.joblib"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError):
        build(["iris"], tmp_path / "b", store=source)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.building"))
    shutil.rmtree(tmp_path / "home")


def test_a_fresh_venv_built_as_the_dockerfile_says_serves_the_bundle(bundle, tmp_path):
    """No container engine here: run the Dockerfile's own install and start commands in a new venv."""
    import json
    import re

    dockerfile = (bundle.path / "Dockerfile").read_text()
    installs = re.findall(r"^RUN (pip install .+)$", dockerfile, re.M)
    start = json.loads(re.search(r"^CMD (\[.+\])$", dockerfile, re.M).group(1))
    assert len(installs) == 2 and start[:3] == ["pallet", "serve", "--bundle"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for command in installs:
        words = command.split()
        done = subprocess.run(f"{venv}/bin/python -m {' '.join(words)}", shell=True, cwd=bundle.path,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True)
    installed = {line.split("==")[0].lower() for line in freeze.stdout.splitlines() if "==" in line}
    assert "pytest" not in installed and "scikit-learn" in installed
    port = free_port()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PALLET_HOME": str(bundle.path / "store"), "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(venv / "bin" / start[0]), *start[1:3], str(bundle.path), "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        answer = httpx.post(f"http://127.0.0.1:{port}/v2/models/digits/infer", json={"inputs": [
            {"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0.0] * 64}]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.fixture(scope="module")
def cloud_bundle(store, tmp_path_factory):
    return build(["iris"], tmp_path_factory.mktemp("cloud") / "bundle", store=store,
                 targets=("lambda-image", "sagemaker"))


LAMBDA_CALL = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/lambda")
from handler import app, handler
event = {"version": "2.0", "routeKey": "POST /v1/models/iris:predict", "rawPath": "/v1/models/iris:predict",
         "rawQueryString": "", "headers": {"content-type": "application/json", "host": "abc.execute-api.aws"},
         "body": json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}), "isBase64Encoded": False,
         "requestContext": {"http": {"method": "POST", "path": "/v1/models/iris:predict", "sourceIp": "1.2.3.4",
                                     "protocol": "HTTP/1.1", "userAgent": "test"}, "stage": "$default",
                            "requestId": "r1", "accountId": "1", "apiId": "a", "domainName": "abc.execute-api.aws",
                            "time": "25/Nov/2026:10:00:00 +0000", "timeEpoch": 1795600000000}}
first = handler(event, None)
loaded = app.state.plane.models["iris"]["1"].model
second = handler(event, None)
print(json.dumps({**second, "same_model": app.state.plane.models["iris"]["1"].model is loaded,
                  "first_status": first["statusCode"]}))
"""


def test_lambda_handler_answers_an_api_gateway_v2_event(cloud_bundle, tmp_path):
    import json

    assert (cloud_bundle.path / "lambda" / "handler.py").exists()
    done = subprocess.run([sys.executable, "-c", LAMBDA_CALL, str(cloud_bundle.path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PALLET_HOME": "/nonexistent", "PALLET_LAMBDA_TMP": str(tmp_path / "tmp")})
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["statusCode"] == answer["first_status"] == 200
    assert json.loads(answer["body"])["predictions"][0]["label"] == 0
    assert answer["same_model"] is True  # loaded once per cold start, not per call
    for dockerfile in ("lambda/Dockerfile", "sagemaker/Dockerfile"):
        lint = subprocess.run([str(BIN / "hadolint"), str(cloud_bundle.path / dockerfile)], capture_output=True, text=True)
        assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout


def test_a_lambda_zip_over_250_mb_is_refused(store, tmp_path):
    from pallet.deploy.bundle import LAMBDA_ZIP_LIMIT, lambda_size

    with pytest.raises(PalletError, match=r"MB unzipped, over Lambda's 250 MB limit.*--target lambda-image"):
        build(["iris"], tmp_path / "zip", store=store, targets=("lambda",))
    assert not (tmp_path / "zip").exists()
    assert lambda_size({"numpy": "x", "pyarrow": "x"}, tmp_path) > 0 and LAMBDA_ZIP_LIMIT == 250 * 2**20


def test_sagemaker_serve_answers_ping_and_invocations(cloud_bundle, tmp_path):
    import tarfile

    with tarfile.open(cloud_bundle.path / "model.tar.gz") as tar:
        tar.extractall(tmp_path / "model", filter="data")  # what SageMaker does with model.tar.gz
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "SM_MODEL_DIR": str(tmp_path / "model"),
           "SAGEMAKER_BIND_TO_PORT": str(port)}
    env.pop("PALLET_DB_URL", None)
    proc = subprocess.Popen(["sh", str(cloud_bundle.path / "sagemaker" / "serve")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, path="/ping")
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", content="5.1,3.5,1.4,0.2\n",
                            headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == 0
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
