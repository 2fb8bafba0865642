"""Every JSON body pallet's HTTP API accepts and returns, as msgspec structs: requests are decoded
into them (`pallet.decoding.Decoder`) and `/openapi.json` describes them (`serve/openapi.py`).

One module per protocol: `v2` (Open Inference Protocol, repository), `v1` (KServe V1, SageMaker,
MLflow, Azure ML), `admin` (feedback, rollouts). The scoring shapes SageMaker, MLflow and Azure ML
accept live in `pallet.bodies`, beside the code that reads them (`pallet.inputs`)."""

from typing import Annotated

import msgspec

from pallet.decoding import expects


class Error(msgspec.Struct):
    """Every error answer."""
    error: str


__all__ = ["Annotated", "Error", "expects"]
