"""Property-based fuzzing of every decoder that reads what a client sends: whatever the input,
each raises nothing but pallet's declared input errors (`PalletError` subclasses)."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pallet.errors import PalletError
from pallet.inputs import parse_inputs
from pallet.serve import codecs
from pallet.serve.protocols import azureml, v2, v2_grpc
from pallet.serve.protocols.proto import grpc_service_pb2 as pb
from pallet.signature import Signature, TensorSpec

EXAMPLES = 400
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TABLE = Signature((TensorSpec("input", "float64", (-1, 4)),), (TensorSpec("label", "int64", (-1,)),))
NAMED = Signature(tuple(TensorSpec(n, "float64", (-1,)) for n in ("a", "b")))
TEXT = Signature((TensorSpec("text", "str", (-1,)),))
DATATYPES = st.sampled_from([*codecs.DATATYPES, "FP99", "", "int"])
SHAPES = st.lists(st.one_of(st.integers(min_value=-2, max_value=6), st.just(2**32)), max_size=4)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUES = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=6), children, max_size=4)), max_leaves=30)
TENSOR = st.fixed_dictionaries({"name": st.one_of(st.just("input"), st.text(max_size=4)), "datatype": DATATYPES,
                                "shape": SHAPES}, optional={"data": JSON_VALUES, "parameters": JSON_VALUES})


def outcome(call, *args):
    """What `call` returns, or the error it raised when that is one of pallet's own (anything else
    propagates and fails the test)."""
    try:
        return call(*args)
    except PalletError as e:
        return e


def refused_or(result, kind) -> bool:
    """A decoder either refuses with a message or gives what it promises."""
    return bool(str(result)) if isinstance(result, PalletError) else isinstance(result, kind)


def arrays(result) -> bool:
    return refused_or(result, dict) and (isinstance(result, PalletError)
                                         or all(isinstance(v, np.ndarray) for v in result.values()))


@FUZZ
@given(st.one_of(st.binary(max_size=200), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=3)},
                                       optional={"outputs": JSON_VALUES, "id": JSON_VALUES,
                                                 "parameters": JSON_VALUES}).map(lambda d: json.dumps(d).encode())),
       st.one_of(st.none(), st.text(max_size=6)))
def test_v2_json_and_binary_request_decoder(body, header_length):
    result = outcome(v2.decode_request, body, header_length, "m", "1")
    assert refused_or(result, tuple)


@FUZZ
@given(DATATYPES, SHAPES, st.binary(max_size=96))
def test_binary_tensor_parser(datatype, shape, raw):
    assert refused_or(outcome(codecs.decode_binary, datatype, shape, raw, "input 'x'"), np.ndarray)


@FUZZ
@given(DATATYPES, SHAPES, JSON_VALUES)
def test_json_tensor_parser(datatype, shape, data):
    assert refused_or(outcome(codecs.decode_json, datatype, shape, data, "input 'x'"), np.ndarray)


@FUZZ
@given(st.text(max_size=200), st.sampled_from([TABLE, NAMED, TEXT]))
def test_csv_parser(text, signature):
    assert arrays(outcome(lambda: signature.validate(parse_inputs(text, signature, "csv"))))


@FUZZ
@given(JSON_VALUES, st.sampled_from([TABLE, NAMED, TEXT]))
def test_json_inputs_v1_instances_and_mlflow_shapes(value, signature):
    for wrapped in (value, {"instances": value}, {"dataframe_split": value}, {"dataframe_records": value}):
        assert arrays(outcome(lambda w=wrapped: signature.validate(parse_inputs(json.dumps(w), signature, "json"))))


@FUZZ
@given(JSON_VALUES, st.sampled_from([TABLE, NAMED]))
def test_azure_scoring_decoder(value, signature):
    for body in (value, {"input_data": value}, {"data": value}):
        assert arrays(outcome(lambda b=body: signature.validate(azureml.decode(b, signature))))


@FUZZ
@given(st.dictionaries(st.sampled_from(["input", "a", "b", "text", "x"]), JSON_VALUES, max_size=3),
       st.sampled_from([TABLE, NAMED, TEXT]))
def test_signature_validate(inputs, signature):
    assert arrays(outcome(signature.validate, inputs))


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=4), DATATYPES, SHAPES, st.lists(st.floats(), max_size=8)), max_size=3),
       st.lists(st.binary(max_size=40), max_size=3))
def test_grpc_infer_request_decoder(tensors, raw):
    request = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape, values in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
        else:
            tensor.contents.fp64_contents.extend(values)
    request.raw_input_contents.extend(raw)
    assert refused_or(outcome(v2_grpc.decode_request, request, "1"), tuple)


def test_a_decoded_tensor_round_trips_through_the_binary_extension():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    datatype, shape, raw = codecs.encode_binary(array)
    assert np.array_equal(codecs.decode_binary(datatype, shape, raw, "x"), array)
    with pytest.raises(PalletError, match="needs 48"):
        codecs.decode_binary(datatype, shape, raw[:-1], "x")
