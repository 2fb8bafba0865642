"""The Open Inference Protocol's inference parameters, read the same way by every protocol (REST and
gRPC), so that each one is honoured, or refused with the same message, whichever way it came.

Request `parameters`:
  binary_data_output       every output as binary tensor data (REST) / raw contents (gRPC)
  sequence_id, _start, _end  refused: pallet serves stateless models, with no sequence batching
  priority, timeout        accepted; pallet has one priority level and no per-request timeout
  anything else            Triton's parameters extension: passed to the data plane, read by no runtime
A requested output's `parameters`: binary_data (as above, for that output), classification
(`serve/classification.py`); any other is refused. An input's shared memory parameters are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pallet.errors import InvalidInput
from pallet.serve import classification

BINARY_OUTPUT = "binary_data_output"
OUTPUT_PARAMETERS = ("binary_data", classification.PARAMETER)
SEQUENCE = ("sequence_id", "sequence_start", "sequence_end")
SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def check_request(parameters: Mapping[str, Any]) -> bool:
    """Refuse what pallet cannot honour; whether every output is wanted as binary data."""
    for key in SEQUENCE:
        if parameters.get(key) not in (None, 0, "", False):
            raise InvalidInput(f"parameter '{key}' is not supported: pallet serves stateless models, with no "
                               "sequence batching; send each request without sequence_id, sequence_start "
                               "and sequence_end")
    return flag(BINARY_OUTPUT, parameters.get(BINARY_OUTPUT, False), "")


def flag(key: str, value: Any, owner: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{owner}'{key}' must be true or false")
    return value


def check_tensor(where: str, keys: Any) -> None:
    """Refuse shared memory parameters on a tensor: its data must come with the request."""
    if any(key in SHARED_MEMORY for key in keys):
        raise InvalidInput(f"{where}: shared memory is not supported (pallet has no shared memory extension); "
                           "send the tensor's data in the request")


def outputs(requested: list[tuple[str, Mapping[str, Any]]],
            every_binary: bool) -> tuple[list[str], set[str], dict[str, int]]:
    """The requested outputs' names, those to send as binary data, and the classes wanted of each
    (`every_binary`: the request's binary_data_output, for outputs that do not say)."""
    names, binary, classify = [], set(), {}
    for name, parameters in requested:
        wants_binary, k = output(name, parameters)
        names.append(name)
        if wants_binary or (wants_binary is None and every_binary):
            binary.add(name)
        if k is not None:
            classify[name] = k
    return names, binary, classify


def output(name: str, parameters: Mapping[str, Any]) -> tuple[bool | None, int | None]:
    """A requested output's (binary_data, classification) parameters, None where not given."""
    owner = f"output '{name}': "
    check_tensor(f"output '{name}'", parameters)
    for key in parameters:
        if key not in OUTPUT_PARAMETERS:
            raise InvalidInput(f"{owner}parameter '{key}' is not supported (only {', '.join(OUTPUT_PARAMETERS)})")
    binary = parameters.get("binary_data")
    k = parameters.get(classification.PARAMETER)
    return (None if binary is None else flag("binary_data", binary, owner),
            None if k is None else classification.count(name, k))
