"""Every inference parameter pallet documents for the Open Inference Protocol, sent over REST and gRPC
with Triton's own clients against one real server: each is honoured the same way on both, or refused
with the same message and the matching status."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_digits, load_iris
from tritonclient.utils import InferenceServerException

from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import MODELS, RunningServer

IRIS = load_iris().data[[0, 50, 149]]
DIGITS = load_digits().data[:4]
BROKEN = np.array([[1e308, 1e308, -1e308, 1e308]])  # iris answers NaN probabilities for it
STATUS = {"400": "StatusCode.INVALID_ARGUMENT", "422": "StatusCode.INVALID_ARGUMENT"}


@pytest.fixture(scope="module")
def clients(demo_store):
    config = ServeConfig(models=MODELS, grpc_port=free_port(), access_log=False)
    with RunningServer(create_app(config, demo_store)) as running:
        with httpclient.InferenceServerClient(running.url.removeprefix("http://")) as http, \
                grpcclient.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as grpc:
            yield {httpclient: http, grpcclient: grpc}


def outcome(module, client, model="iris", rows=IRIS, outputs=(), shared_memory=False, **options):
    """What one call gives: ("ok", {output: array}) or ("refused", gRPC status, message, status as sent)."""
    tensor = module.InferInput("input", list(rows.shape), "FP64")
    if shared_memory:
        tensor.set_shared_memory("region", rows.nbytes)
    else:
        tensor.set_data_from_numpy(rows.astype(np.float64))
    requested = [module.InferRequestedOutput(name, class_count=k) for name, k in outputs] or None
    try:
        result = client.infer(model, [tensor], outputs=requested, **options)
    except InferenceServerException as error:
        return "refused", STATUS.get(error.status(), error.status()), error.message(), error.status()
    names = [o["name"] if isinstance(o, dict) else o.name for o in _outputs(result)]
    return "ok", {name: result.as_numpy(name) for name in names}


def _outputs(result):
    response = result.get_response()
    return response["outputs"] if isinstance(response, dict) else response.outputs


def both(clients, **call):
    """The outcome over REST and over gRPC, checked to be the same; refusals as (REST status, message)."""
    rest, grpc = (outcome(module, client, **call) for module, client in clients.items())
    assert rest[0] == grpc[0], (rest, grpc)
    if rest[0] == "refused":
        assert rest[1:3] == grpc[1:3]
        return "refused", rest[3], rest[2]
    assert rest[1].keys() == grpc[1].keys()
    for name in rest[1]:
        assert rest[1][name].dtype == grpc[1][name].dtype and rest[1][name].tolist() == grpc[1][name].tolist()
    return rest


def test_classification_answers_top_k_score_index_strings(clients):
    kind, answer = both(clients, model="digits", rows=DIGITS, outputs=[("probabilities", 3)])
    top = answer["probabilities"]
    assert kind == "ok" and top.shape == (4, 3) and top.dtype == object
    rows = [[cell.decode().split(":") for cell in row] for row in top]
    assert [int(row[0][1]) for row in rows] == [0, 1, 2, 3]  # the best class of each digit
    for row in rows:
        scores = [float(score) for score, _ in row]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_classification_names_the_classes_and_clamps_k_as_triton_does(clients):
    kind, answer = both(clients, outputs=[("probabilities", 5), ("label", 0)])
    top = answer["probabilities"]
    assert kind == "ok" and top.shape == (3, 3)  # 5 asked, the model has 3 classes
    assert [cell.decode().split(":")[1:] for cell in top[:, 0]] == [["0", "setosa"], ["1", "versicolor"],
                                                                    ["2", "virginica"]]
    assert answer["label"].tolist() == [0, 1, 2]  # an output without the parameter keeps its tensor


@pytest.mark.parametrize("outputs, message", [
    ([("label", 3)], "output 'label' of model 'iris' (int64[-1]) holds no class scores, so the 'classification' "
                     "parameter cannot apply to it; its class scores are in: probabilities"),
    ([("probabilities", -2)], "output 'probabilities': 'classification' must be a whole number of classes, at least 1"),
])
def test_classification_refusals_are_the_same(clients, outputs, message):
    assert both(clients, outputs=outputs) == ("refused", "400", message)


def test_binary_data_output_and_requested_outputs(clients):
    # with no outputs named, Triton's HTTP client asks for every output as binary data (binary_data_output)
    kind, answer = both(clients)
    assert kind == "ok" and set(answer) == {"label", "probabilities"} and answer["label"].tolist() == [0, 1, 2]
    kind, answer = both(clients, outputs=[("label", 0)])
    assert set(answer) == {"label"}


def test_priority_timeout_and_custom_parameters_are_accepted_alike(clients):
    plain = both(clients, outputs=[("probabilities", 0)])[1]["probabilities"]
    kind, answer = both(clients, outputs=[("probabilities", 0)], priority=1, timeout=5_000_000,
                        parameters={"note": "x", "level": 2})
    assert kind == "ok" and answer["probabilities"].tolist() == plain.tolist()


def test_sequence_parameters_are_refused_alike(clients):
    refused = both(clients, sequence_id=7, sequence_start=True)
    assert refused[:2] == ("refused", "400")
    assert refused[2].startswith("parameter 'sequence_id' is not supported: pallet serves stateless models")


def test_shared_memory_inputs_are_refused_alike(clients):
    assert both(clients, shared_memory=True) == (
        "refused", "400",
        "input 'input': shared memory is not supported (pallet has no shared memory extension); "
        "send the tensor's data in the request")


def test_non_finite_outputs_are_refused_alike(clients):
    message = ("iris answered with non-finite values (NaN or infinity) in output 'probabilities' at rows 0: "
               "the input is likely outside what the model handles")
    assert both(clients, rows=BROKEN) == ("refused", "422", message)  # INVALID_ARGUMENT over gRPC
    # the rows are named, and the good rows of the same request do not hide it
    refused = both(clients, rows=np.vstack([IRIS, BROKEN, IRIS[:1], BROKEN]), outputs=[("label", 0)])
    assert refused[2].endswith("in output 'probabilities' at rows 3, 5: the input is likely outside what the "
                               "model handles")


def test_classification_reads_the_same_as_json_and_as_binary_data(clients):
    answers = []
    for binary in (True, False):
        tensor = httpclient.InferInput("input", list(IRIS.shape), "FP64")
        tensor.set_data_from_numpy(IRIS)
        wanted = httpclient.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)
        result = clients[httpclient].infer("iris", [tensor], outputs=[wanted])
        output = result.get_output("probabilities")
        assert output["datatype"] == "BYTES" and output["shape"] == [3, 2]
        assert ("binary_data_size" in output.get("parameters", {})) is binary
        # Triton's client gives binary BYTES as bytes and JSON ones as str
        answers.append([[v.decode() if isinstance(v, bytes) else v for v in row]
                        for row in result.as_numpy("probabilities").tolist()])
    assert answers[0] == answers[1]
    assert [row[0].split(":")[2] for row in answers[0]] == ["setosa", "versicolor", "virginica"]
