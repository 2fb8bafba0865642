"""schemathesis, driven by the server's own /openapi.json against `pallet serve` with the demo models:
no 5xx, and every answer in its declared status codes, content types and schemas. A bounded run
here; `make fuzz` runs many more examples, with the API key as well."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pallet.net import free_port, wait_ready

BIN = Path(sys.executable).parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
KEY = "schemathesis-key-7f3a9c"


def test_the_api_holds_its_openapi_contract_under_generated_requests(demo_store, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PALLET_HOME": str(demo_store.home), "PALLET_DB_URL": demo_store.db_url,
           "PALLET_API_KEY": KEY}  # admin operations answer 401 here: the stateful phase cannot unload models
    server = subprocess.Popen([str(BIN / "pallet"), "serve", "digits@production", "iris@production",
                               "digits-onnx@production", "--port", str(port), "--no-access-log"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_ready(url, server)
        done = subprocess.run([str(BIN / "st"), "run", f"{url}/openapi.json", "--checks", CHECKS,
                               "--max-examples", "8", "--seed", "1", "--workers", "1", "--no-color"],
                              capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert done.returncode == 0, done.stdout[-4000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert cases and int(cases.group(1)) == int(cases.group(2)) > 300, done.stdout[-2000:]
    selected, tested = re.search(r"Selected: (\d+)/(\d+)", done.stdout), re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested and int(tested.group(1)) == int(selected.group(2)) > 30  # every operation
    assert "Traceback" not in err
