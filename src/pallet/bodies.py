"""The row-oriented scoring bodies of MLflow, SageMaker and Azure ML, as msgspec structs, and the
functions that tell which one a body is and check it against its schema.

What each row holds depends on the model's signature; `pallet.inputs` reads the rows, and
`/openapi.json` describes these same structs.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import UNSET, UnsetType

from pallet.decoding import Decoder, expects

Rows = Annotated[list[Any], expects("a non-empty list, one entry per row",
                                    "rows of features, or objects keyed by input name", min_length=1)]
Params = Annotated[dict[str, Any], expects("an object", "MLflow's inference parameters; no model served here takes "
                                                        "any, so they are ignored")]
SPLIT = 'an object with "data" (rows) and optional "columns" and "index"'


class DataframeSplit(msgspec.Struct, forbid_unknown_fields=True):
    """pandas' split orientation; `columns` match the model's input names."""
    unknown: ClassVar[str] = "unknown key(s) {keys}; it takes {known}"
    data: Annotated[list[Any], expects("a list of rows")]
    columns: Annotated[list[str | int], expects("a list of column names")] | None = None
    index: Annotated[list[Any], msgspec.Meta(description="row labels; ignored")] | None = None


class MlflowSplit(msgspec.Struct):
    dataframe_split: Annotated[DataframeSplit, expects(SPLIT)]
    params: Params | UnsetType = UNSET


class MlflowRecords(msgspec.Struct):
    dataframe_records: Annotated[list[dict[str, Any]], expects("a non-empty list of objects keyed by input name",
                                                               min_length=1)]
    params: Params | UnsetType = UNSET


class MlflowInstances(msgspec.Struct):
    instances: Rows
    params: Params | UnsetType = UNSET


class MlflowInputs(msgspec.Struct):
    inputs: Annotated[Any, msgspec.Meta(description="rows, or rows by input name")]
    params: Params | UnsetType = UNSET


class AzureInputData(msgspec.Struct):
    input_data: DataframeSplit | Rows


class AzureData(msgspec.Struct):
    """The classic scoring script's shape."""
    data: Rows


MlflowShape = MlflowSplit | MlflowRecords | MlflowInstances | MlflowInputs
MLFLOW = {"dataframe_split": MlflowSplit, "dataframe_records": MlflowRecords, "instances": MlflowInstances,
          "inputs": MlflowInputs}
AZURE = {"input_data": AzureInputData, "data": AzureData}
_DECODERS = {key: Decoder(kind, expected=f'{{"{key}": ...}}', quote='"') for key, kind in {**MLFLOW, **AZURE}.items()}


def mlflow_shape(body: dict) -> MlflowShape | None:
    """The MLflow shape `body` has (one of `MLFLOW`'s keys, with optional `params`), checked against its
    schema; None when it has none (the model's inputs by name, say)."""
    keys = [key for key in body if key != "params"]
    if len(keys) != 1 or len(body) > 2 or keys[0] not in MLFLOW:
        return None
    return _DECODERS[keys[0]].convert(body)


def azure_shape(body: Any) -> AzureInputData | AzureData | None:
    """The Azure ML scoring shape `body` has, checked against its schema; None when it has none."""
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in AZURE:
        return None
    return _DECODERS[next(iter(body))].convert(body)
