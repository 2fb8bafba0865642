"""Coverage-guided fuzzing (atheris, libFuzzer) of the decoders that read what clients send.

    python tests/fuzz/decoders.py TARGET [libFuzzer options, e.g. -runs=5000 CORPUS_DIR]

Each target takes the fuzzer's bytes as a request part and must either decode it or raise one of
pallet's declared input errors (`PalletError`); anything else is a crash, which libFuzzer reports
with the input that caused it, and a non-zero exit. Seeds (well-formed requests) start each run
so the fuzzer mutates from inputs that reach deep into the decoders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import orjson

with atheris.instrument_imports(include=["pallet"]):  # coverage feedback from pallet's own code
    from pallet.errors import PalletError
    from pallet.inputs import from_instances, parse_inputs
    from pallet.serve import codecs
    from pallet.serve.protocols import v2
    from pallet.signature import Signature, TensorSpec

TABLE = Signature((TensorSpec("input", "float64", (-1, 4)),), (TensorSpec("label", "int64", (-1,)),))
NAMED = Signature(tuple(TensorSpec(n, "float64", (-1,)) for n in ("a", "b")))
TEXT = Signature((TensorSpec("text", "str", (-1,)),))
SIGNATURES = [TABLE, NAMED, TEXT]
DATATYPES = [*codecs.DATATYPES, "FP99"]


def split(data: bytes, count: int) -> tuple[int, bytes]:
    """A choice among `count` from the first byte, and the rest (so seeds read as written)."""
    return (data[0] % count if data else 0), data[1:]


def v2_request(data: bytes) -> None:
    """A V2 body: JSON, or JSON header + binary tensors when the header length is given."""
    binary, rest = split(data, 2)
    length = str(int.from_bytes(rest[:2], "big")) if binary else None
    v2.decode_request(rest[2:] if binary else rest, length, "m", "1")


def binary_tensor(data: bytes) -> None:
    """The binary tensor data extension: datatype, shape (a byte per dimension, 255 for 2**40), raw bytes."""
    kind, rest = split(data, len(DATATYPES))
    dims, rest = split(rest, 5)
    shape = [2**40 if d == 255 else d for d in rest[:dims]]
    codecs.decode_binary(DATATYPES[kind], shape, rest[dims:], "input 'x'")


def csv(data: bytes) -> None:
    which, rest = split(data, len(SIGNATURES))
    signature = SIGNATURES[which]
    signature.validate(parse_inputs(rest.decode("utf-8", "replace"), signature, "csv"))


def v1_instances(data: bytes) -> None:
    which, rest = split(data, len(SIGNATURES))
    try:
        instances = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return  # the server answers 400 before decoding instances
    SIGNATURES[which].validate(from_instances(instances, SIGNATURES[which]))


def signature_validate(data: bytes) -> None:
    which, rest = split(data, len(SIGNATURES))
    try:
        inputs = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return
    SIGNATURES[which].validate(inputs)


TARGETS = {"v2_request": v2_request, "binary_tensor": binary_tensor, "csv": csv, "v1_instances": v1_instances,
           "signature_validate": signature_validate}

HEADER = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}]}'
SEEDS = {
    "v2_request": [b'\x00{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}],'
                   b' "outputs": [{"name": "label"}], "id": "a"}',
                   b"\x01" + len(HEADER).to_bytes(2, "big") + HEADER + b"\x00\x00\x80?\x00\x00\x00@"],
    "binary_tensor": [bytes([DATATYPES.index("FP32"), 2, 1, 2]) + b"\x00\x00\x80?\x00\x00\x00@",
                      bytes([DATATYPES.index("BYTES"), 1, 1]) + b"\x03\x00\x00\x00abc"],
    "csv": [b"\x00a,b,c,d\n1,2,3,4\n5,6,7,8", b"\x01a,b\n1,2\n", b"\x02text\nhello\nworld"],
    "v1_instances": [b"\x00[[1, 2, 3, 4], [5, 6, 7, 8]]", b'\x01[{"a": 1, "b": 2}]', b'\x02["hello", "world"]'],
    "signature_validate": [b'\x00{"input": [[1, 2, 3, 4]]}', b'\x01{"a": [1], "b": [2]}', b'\x02{"text": ["x"]}'],
}


def main() -> None:
    name, options = sys.argv[1], sys.argv[2:]
    target = TARGETS[name]
    for folder in [Path(o) for o in options if not o.startswith("-")][:1]:  # the corpus: seeded when new
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            for i, seed in enumerate(SEEDS[name]):
                (folder / f"seed-{i}").write_bytes(seed)

    def one_input(data: bytes) -> None:
        try:
            target(data)
        except PalletError:
            pass  # a declared input error: the server answers 4xx with its message

    atheris.Setup([sys.argv[0], *options], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
