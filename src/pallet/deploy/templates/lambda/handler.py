"""AWS Lambda entry point for this bundle: the pallet app through Mangum (API Gateway HTTP and REST
APIs, function URLs, ALB). Models load on the first invocation (a cold start) and stay loaded."""

import os
from pathlib import Path

from mangum import Mangum

from pallet.deploy.bundle import app_from_bundle

HERE = Path(__file__).resolve().parent
BUNDLE = HERE if (HERE / "pallet.yaml").exists() else HERE.parent  # the image's task root, or the bundle folder

# Models load here, once per cold start; Mangum's lifespan would load them again on every call.
app = app_from_bundle(BUNDLE, writable=os.environ.get("PALLET_LAMBDA_TMP", "/tmp/pallet"), preload=True)
handler = Mangum(app, lifespan="off")
