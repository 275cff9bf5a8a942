#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another.
# Not part of CI (too slow for its time limit): run it by hand after touching
# a parser, or for longer before a release. Needs no nightly toolchain:
# RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# New corpus entries go to $FUZZ_OUT/TARGET (default /tmp/barge-fuzz), so
# the seeds in tests/fuzz/corpus stay as committed; crashes go to
# tests/fuzz/artifacts/TARGET (ignored by git). Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz TARGET tests/fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-60}"
shift || true
out="${FUZZ_OUT:-/tmp/barge-fuzz}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir tests/fuzz)
fi

cargo fuzz build --fuzz-dir tests/fuzz
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$out/$target"
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run --fuzz-dir tests/fuzz "$target" "$out/$target" "tests/fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in tests/fuzz/artifacts/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a failure"
