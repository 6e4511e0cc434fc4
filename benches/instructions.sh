#!/usr/bin/env bash
# Instructions per request through McpSessionLayer, counted by callgrind: exact and
# repeatable where timings on a shared machine are not. Each scenario runs twice
# (N1 and N2 requests) and the difference is divided by N2 - N1, so start-up, the
# runtime and the first session cancel out.
#
#   bash benches/instructions.sh [scenario ...]     (needs valgrind)
#
# Scenarios: baseline json modern baseline_sse sse baseline_initialize initialize.
# The layer's cost is a scenario minus its baseline (json and modern against
# baseline, sse against baseline_sse, initialize against baseline_initialize).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
N1=${N1:-1000}
N2=${N2:-3000}
bin=$(cargo bench --bench core --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*core-[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "cannot find the core bench binary" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() {
  LAYER_PROBE="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin" >/dev/null 2>&1
  callgrind_annotate "$work/out" | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }'
}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(baseline json modern baseline_sse sse baseline_initialize initialize)
printf '| scenario | instructions per request |\n|---|---|\n'
for s in "${scenarios[@]}"; do
  a=$(count "$s" "$N1")
  b=$(count "$s" "$N2")
  printf '| %s | %d |\n' "$s" $(( (b - a) / (N2 - N1) ))
done
