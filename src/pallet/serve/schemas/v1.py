"""Row-oriented bodies: KServe V1 / Vertex AI instances, SageMaker and MLflow scoring, Azure ML scoring.

What each row holds depends on the model's signature; `pallet.inputs` reads the rows. The MLflow and
Azure ML shapes live in `pallet.bodies`, where `pallet.inputs` checks bodies against them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from pallet.bodies import AzureData, AzureInputData, MlflowInputs, MlflowInstances, MlflowRecords, MlflowSplit, Rows


class Instances(msgspec.Struct):
    """KServe V1 / Vertex AI: `instances` (or the V1 `inputs` spelling) in, one prediction per row out."""
    instances: Rows | UnsetType = UNSET
    inputs: Annotated[Any, msgspec.Meta(description="the same rows, under V1's other name")] = UNSET


class Predictions(msgspec.Struct):
    predictions: list[Any]


class ModelList(msgspec.Struct):
    models: list[str]


SAGEMAKER_JSON = (MlflowInstances, list[Any], MlflowSplit, MlflowRecords, MlflowInputs)
AZURE_JSON = (AzureInputData, AzureData)
