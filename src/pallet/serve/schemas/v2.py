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
    shared_memory_region: Annotated[Any, msgspec.Meta(
        description="refused: pallet has no shared memory extension")] | UnsetType = UNSET


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


# A requested output's parameters, read by `serve/parameters.py` for REST and gRPC alike (one set of
# messages); the schema documents them.
OutputParameters = Annotated[dict[str, Any], expects("an object"), msgspec.Meta(extra_json_schema={
    "description": "how to answer this output: as binary tensor data, and/or as its top classes per row "
                   "(Triton's classification extension: BYTES [n, k] of \"score:index[:label]\")",
    "properties": {"binary_data": {"type": "boolean"},
                   "classification": {"type": "integer", "minimum": 1,
                                      "description": "the number of top classes to answer per row"}},
    "additionalProperties": False})]


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


class ConfigTensor(msgspec.Struct):
    name: str
    data_type: Annotated[str, msgspec.Meta(description="a Triton data type: TYPE_FP32, TYPE_STRING, ...")]
    dims: Annotated[list[int], msgspec.Meta(description="without the batch axis when max_batch_size > 0")]


class DynamicBatching(msgspec.Struct):
    preferred_batch_size: list[int]
    max_queue_delay_microseconds: int


class InstanceGroup(msgspec.Struct):
    name: str
    kind: str
    count: int


class ModelConfig(msgspec.Struct):
    """Triton's model configuration (model_config.proto `ModelConfig`) in its JSON form: the fields
    pallet fills are listed; every other field of the message is there too, at its default."""
    name: str
    platform: str
    backend: str
    max_batch_size: Annotated[int, msgspec.Meta(description="0: no batching, dims include the rows")]
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    instance_group: list[InstanceGroup]
    version_policy: dict[str, Any]
    parameters: dict[str, Any]
    dynamic_batching: DynamicBatching | UnsetType = UNSET


class StatisticDuration(msgspec.Struct):
    count: int
    ns: Annotated[int, msgspec.Meta(description="cumulative nanoseconds")]


class InferStatistics(msgspec.Struct):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class ModelStatistics(msgspec.Struct):
    name: str
    version: str
    last_inference: Annotated[int, msgspec.Meta(description="milliseconds since the epoch; 0: none yet")]
    inference_count: Annotated[int, msgspec.Meta(description="rows predicted (cache hits excluded)")]
    execution_count: Annotated[int, msgspec.Meta(description="predict calls; a batch is one")]
    inference_stats: InferStatistics


class ModelStatisticsResponse(msgspec.Struct):
    """Triton's statistics extension (grpc_service.proto `ModelStatisticsResponse`) in its JSON form."""
    model_stats: list[ModelStatistics]
