"""A bounded run of each coverage-guided fuzz target (tests/fuzz/decoders.py, atheris); `make fuzz`
runs them far longer. A target fails when a decoder raises anything but pallet's declared errors."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).parents[1] / "fuzz" / "decoders.py"
RUNS = 20_000
TARGETS = ["v2_request", "binary_tensor", "csv", "v1_instances", "signature_validate"]


@pytest.mark.parametrize("target", TARGETS)
def test_decoder_survives_coverage_guided_fuzzing(target, tmp_path):
    done = subprocess.run([sys.executable, str(HARNESS), target, f"-runs={RUNS}", "-seed=1", "-max_total_time=300",
                           f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = re.search(r"^Done (\d+) runs", done.stderr, re.M)
    assert runs and int(runs.group(1)) == RUNS
    coverage = re.findall(r"cov: (\d+)", done.stderr)
    assert coverage and int(coverage[-1]) > int(coverage[0])  # the fuzzer found paths beyond its seeds
