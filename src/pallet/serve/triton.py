"""Triton's model configuration and statistics extensions, for every protocol.

The answers are the messages of Triton's model_config.proto and grpc_service.proto: gRPC sends
them as they are, REST sends their JSON form (`to_json`, snake_case field names and numbers, as
Triton's HTTP endpoint writes them).

- Configuration: built from the signature and the serve settings. `max_batch_size` is the
  batcher's when the version is batched (dims then leave out the batch axis, as Triton's
  clients expect), else 0 (dims start with -1, the rows). `dynamic_batching` says what the
  batcher does: batches of up to `max_batch_size` rows, a request waiting at most
  `max_latency_ms`. `instance_group` is one CPU instance per worker process (each runs a
  version's predict calls one at a time), with the thread plan in `parameters`.
- Statistics: read from the Prometheus metrics (`metrics.statistics`), so they are what
  `/metrics` says: this process's figures, or every worker's with several workers.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pallet.serve import codecs, metrics
from pallet.serve.dataplane import DataPlane
from pallet.serve.protocols.proto import grpc_service_pb2 as pb
from pallet.serve.protocols.proto import model_config_pb2 as mc
from pallet.signature import TensorSpec

# pallet runtime -> Triton platform (model metadata and configuration) and backend
PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn", "python": "python", "torch": "pytorch_libtorch"}
BACKENDS = {"onnx": "onnxruntime"}  # every other runtime predicts in Python: "python"
STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def platform(runtime: str) -> str:
    return PLATFORMS.get(runtime, runtime)


def model_config(plane: DataPlane, name: str, version: str | None = None) -> Any:
    """The configuration of a loaded version (the one that answers for `name` without a version)."""
    model = plane.get(name, version)
    loaded = plane.models[name][str(model.ref.version)]
    runtime = model.version.manifest.runtime
    batch = loaded.batcher.max_batch_size if loaded.batcher is not None else 0
    config = mc.ModelConfig(
        name=name, platform=platform(runtime), backend=BACKENDS.get(runtime, "python"), max_batch_size=batch,
        input=[_tensor(mc.ModelInput, s, batch) for s in model.signature.inputs],
        output=[_tensor(mc.ModelOutput, s, batch) for s in model.signature.outputs],
        version_policy=mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(
            versions=[int(v) for v in plane.versions(name) if v.isdigit()])),
        instance_group=[mc.ModelInstanceGroup(name=f"{name}_0", kind=mc.ModelInstanceGroup.KIND_CPU,
                                              count=plane.threads.workers)],
        parameters={key: mc.ModelParameter(string_value=str(value))
                    for key, value in plane.threads.runtime_options().items()})
    if loaded.batcher is not None:
        config.dynamic_batching.CopyFrom(mc.ModelDynamicBatching(
            preferred_batch_size=[batch],
            max_queue_delay_microseconds=round(loaded.batcher.max_latency * 1_000_000)))
    return config


def _data_type(spec: TensorSpec) -> int:
    datatype = codecs.datatype_of(spec.dtype)
    return mc.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def _tensor(kind: Any, spec: TensorSpec, max_batch_size: int) -> Any:
    """An input or output: dims without the batch axis when batched; one value per row is Triton's
    `dims: [1]` with `reshape: {shape: []}`."""
    dims = list(spec.shape[1:] if max_batch_size > 0 else spec.shape)
    tensor = kind(name=spec.name, data_type=_data_type(spec), dims=dims or [1])
    if not dims:
        tensor.reshape.SetInParent()
    return tensor


def model_statistics(plane: DataPlane, name: str | None = None, version: str | None = None) -> Any:
    """Statistics of every loaded version, of every loaded version of `name`, or of one version."""
    if name:
        plane.get(name, version)  # unknown model or version: ModelNotFound
        wanted = [(name, version)] if version else [(name, v) for v in plane.versions(name)]
    else:
        wanted = [(n, v) for n in plane.names() for v in plane.versions(n)]
    figures = metrics.statistics()
    return pb.ModelStatisticsResponse(model_stats=[_statistics(n, v, figures.get((n, v))) for n, v in wanted])


def _statistics(name: str, version: str, figures: dict | None) -> Any:
    if figures is None:
        return pb.ModelStatistics(name=name, version=version, inference_stats=pb.InferStatistics())
    stages = {stage: pb.StatisticDuration(count=round(figures[stage]["count"]),
                                          ns=round(figures[stage]["seconds"] * 1e9)) for stage in STAGES}
    return pb.ModelStatistics(
        name=name, version=version, last_inference=round(figures["last_inference"] * 1000),
        inference_count=round(figures["inference_count"]), execution_count=round(figures["execution_count"]),
        inference_stats=pb.InferStatistics(**stages,
                                           cache_hit=pb.StatisticDuration(count=round(figures["cache_hit"])),
                                           cache_miss=pb.StatisticDuration(count=round(figures["cache_miss"]))))


_INTEGERS = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
             FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def to_json(message: Any) -> dict:
    """A message as Triton's HTTP endpoint writes it: snake_case names, every field, 64-bit integers as
    numbers (protobuf's JSON form writes them as strings)."""
    doc = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    return _numbers(message.DESCRIPTOR, doc)


def _numbers(descriptor: Descriptor, doc: dict) -> dict:
    for key, value in doc.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            continue
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            inner = kind.fields_by_name["value"]
            doc[key] = {k: _value(inner, v) for k, v in value.items()}
        elif field.is_repeated:
            doc[key] = [_value(field, item) for item in value]
        else:
            doc[key] = _value(field, value)
    return doc


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return _numbers(field.message_type, value)
    return int(value) if field.type in _INTEGERS else value
