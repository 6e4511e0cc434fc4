#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 25) and print libFuzzer's final
# figures. Usage: bash fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain works with
# RUSTC_BOOTSTRAP=1, which cargo-fuzz's -Z flags need. FUZZ_SANITIZER=address to run
# under ASan (slower; the crate forbids `unsafe`, so the default is none).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds="${1:-25}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
# Optimized, with debug assertions and overflow checks (an arithmetic slip is a
# crash, not a silent wrap). FUZZ_TARGET_DIR moves the build out of fuzz/target.
unset CARGO_TARGET_DIR
flags=(-O -a -s "${FUZZ_SANITIZER:-none}")
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  flags+=(--target-dir "$FUZZ_TARGET_DIR")
fi
cargo fuzz build "${flags[@]}"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  printf '\n--> %s (%s s)\n' "$t" "$seconds"
  # -rss_limit_mb: the layer target holds a runtime and a layer per input; 2 GiB is
  # far above what it needs and still catches a leak.
  log="$(mktemp)"
  status=0
  cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
  if [ "$status" -ne 0 ]; then
    # The panic message comes before libFuzzer's long report; show it first.
    grep -m 5 -A 3 -E "panicked at|ERROR: libFuzzer" "$log" >&2 || true
    tail -n 40 "$log" >&2
    echo "fuzz target $t failed (exit $status): the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
  rm -f "$log"
done
