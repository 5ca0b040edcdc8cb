#!/usr/bin/env bash
# Install AetherFS and run its main job on the embedded local store: publish a sample dataset,
# publish a second version, tag it, pull it back, and show inspect and diff.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -e .
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== making a sample dataset in $work/geo (an SQLite database and a CSV)"
python3 examples/make_sample.py "$work/geo" --version 1
# A fresh dataset name per run: version tags are immutable, so a rerun must not reuse them.
name="demo/geo-db-$(date +%Y%m%d-%H%M%S)"
today="$(date +%Y.%m.%d)"
aetherfs push "$work/geo" "$name:$today" --tag stable

echo "== changing 1% of it and publishing the next version"
python3 examples/make_sample.py "$work/geo" --version 2
aetherfs push "$work/geo" "$name:$today.1"

echo "== what the new version costs a holder of the old one"
aetherfs diff "$name:stable" "$name:latest"

echo "== pulling stable, then moving to latest (only the changed blocks are fetched)"
aetherfs pull "$name:stable" "$work/live"
aetherfs pull "$name:latest" "$work/live"
aetherfs tag "$name:latest" stable
aetherfs tags "$name" --history
aetherfs inspect "$name:stable"
aetherfs ls
