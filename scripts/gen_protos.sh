#!/usr/bin/env bash
# Regenerate the Python gRPC stubs of protocol/*.proto into aetherfs/agent/proto/.
# The virtual include path makes the generated modules import each other by package name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc \
  -Iaetherfs/agent/proto=protocol \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  aetherfs/agent/proto/agent.proto
