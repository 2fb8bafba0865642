"""Open Inference Protocol (KServe V2) REST bodies, and the model repository extension's answers."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import UNSET, UnsetType

from pallet.serve.codecs import DATATYPES
from pallet.serve.schemas import expects

Datatype = Annotated[str, msgspec.Meta(description="a V2 datatype",
                                       extra_json_schema={"enum": list(DATATYPES)})]
Shape = Annotated[list[int], expects("a list of non-negative integers", "dimension sizes, batch first")]


class TensorParameters(msgspec.Struct):
    binary_data_size: Annotated[int, expects("a whole number of bytes", ge=0)] | UnsetType = UNSET


class RequestInput(msgspec.Struct):
    """One input tensor: `data` in JSON (flat or nested, row-major), or `binary_data_size` bytes of
    the binary tensor data extension after the JSON header."""
    label: ClassVar[str] = "input"
    expected: ClassVar[str] = "an object with a string 'name'"
    name: str
    shape: Shape
    datatype: Datatype
    parameters: TensorParameters | None = None
    data: Annotated[Any, msgspec.Meta(description="values, flat or nested, row-major")] = UNSET


class OutputParameters(msgspec.Struct, forbid_unknown_fields=True):
    noun: ClassVar[str] = "parameter"
    binary_data: bool | UnsetType = UNSET


class RequestOutput(msgspec.Struct):
    label: ClassVar[str] = "output"
    expected: ClassVar[str] = "an object with a string 'name'"
    name: str
    parameters: OutputParameters | None = None


class InferenceRequest(msgspec.Struct):
    inputs: Annotated[list[RequestInput], expects("a non-empty list of tensors (name, shape, datatype, data)",
                                                  min_length=1)]
    id: str | None = None
    parameters: Annotated[dict[str, Any], expects("an object")] | None = None
    outputs: Annotated[list[RequestOutput], expects('a list of {"name": ...} objects')] | None = None


class ResponseOutput(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | UnsetType = UNSET
    data: list[Any] | UnsetType = UNSET


class InferenceResponse(msgspec.Struct, omit_defaults=True):
    model_name: str
    outputs: list[ResponseOutput]
    model_version: str | UnsetType = UNSET
    id: str | UnsetType = UNSET


class TensorMetadata(msgspec.Struct):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelParameters(msgspec.Struct):
    size_bytes: int


class ModelMetadata(msgspec.Struct):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class ServerMetadata(msgspec.Struct):
    name: str
    version: str
    extensions: list[str]


class Live(msgspec.Struct):
    live: bool


class Ready(msgspec.Struct):
    ready: bool


class ModelReady(msgspec.Struct):
    name: str
    ready: bool


class RepositoryModel(msgspec.Struct, omit_defaults=True):
    name: str
    version: str | UnsetType = UNSET
    state: str | UnsetType = UNSET
    reason: str | UnsetType = UNSET


class ModelState(msgspec.Struct):
    """What a repository load or unload did."""
    name: str
    state: str
    version: str | UnsetType = UNSET
