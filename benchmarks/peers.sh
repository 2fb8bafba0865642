#!/usr/bin/env bash
# Installs each peer server in a virtual environment of its own under benchmarks/.venvs/.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
install() {
  local name=$1; shift
  if [ ! -x ".venvs/$name/bin/python" ]; then
    "$PYTHON" -m venv ".venvs/$name"
    ".venvs/$name/bin/python" -m pip install --quiet --upgrade pip
  fi
  ".venvs/$name/bin/python" -m pip install --quiet "$@"
}
install mlserver 'mlserver==1.7.1' 'mlserver-sklearn==1.7.1' scikit-learn &
install litserve 'litserve==0.2.19' scikit-learn joblib &
install bentoml 'bentoml==1.4.40' scikit-learn joblib &
install rayserve "ray[serve]==${RAY_VERSION:-2.60.0}" scikit-learn joblib &
wait
echo "peers installed in benchmarks/.venvs"
