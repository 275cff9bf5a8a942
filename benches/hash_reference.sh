#!/usr/bin/env bash
# Hashing throughput of barge's blake3 code (examples/hash_files.rs, which
# calls barge::hash::hash_local_file / hash_local_files) next to the usual
# command-line hashers on the same files: b3sum (blake3, multi-threaded),
# sha256sum and md5sum (coreutils, one thread). Files are read from a warm
# page cache. The criterion bench `cargo bench --bench core -- hash` measures
# the same barge functions in-process; this script adds the references.
#
# usage: benches/hash_reference.sh [WORKDIR]
# env:   RUNS=10 (timed runs per command and round), ROUNDS=3
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-10}"
rounds="${ROUNDS:-3}"
if [[ $# -ge 1 ]]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d /var/tmp/barge-hash.XXXXXX)"
    [[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"
command -v hyperfine >/dev/null || { echo "hyperfine is required (apt-get install -y hyperfine)" >&2; exit 2; }

echo "== building examples/hash_files (release)" >&2
(cd "$repo" && cargo build --release --quiet --example hash_files)
barge_hash="$repo/target/release/examples/hash_files"

if [[ ! -f "$work/files.done" ]]; then
    echo "== writing one 256 MiB file and 2,000 files of 64 KiB in $work" >&2
    head -c 256M /dev/urandom >"$work/big.bin"
    mkdir -p "$work/small"
    head -c 125M /dev/urandom | split -b 64K -a 4 -d - "$work/small/f-"
    touch "$work/files.done"
fi
[[ "$(find "$work/small" -type f | wc -l)" == 2000 ]]
cat "$work/big.bin" "$work/small"/* >/dev/null # warm the page cache

# Same digests from barge and b3sum, as a sanity check.
if command -v b3sum >/dev/null; then
    [[ "$("$barge_hash" "$work/big.bin" | cut -d' ' -f1)" == "$(b3sum "$work/big.bin" | cut -d' ' -f1)" ]]
fi

run_set() { # NAME BYTES then pairs of (label, command)
    local set="$1" bytes="$2"
    shift 2
    local -a labels=() cmds=()
    while [[ $# -gt 0 ]]; do
        labels+=("$1") cmds+=("$2")
        shift 2
    done
    for round in $(seq 1 "$rounds"); do
        local -a args=() order=("${!labels[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#labels[@]} - 1; i >= 0; i--)); do order+=("$i"); done
        fi
        for i in "${order[@]}"; do args+=(-n "${labels[$i]}" "${cmds[$i]}"); done
        echo "== $set, round $round of $rounds" >&2
        hyperfine --warmup 1 --runs "$runs" --export-json "$work/$set-$round.json" "${args[@]}" >&2
    done
    python3 - "$work" "$set" "$rounds" "$bytes" <<'EOF'
import json, statistics, sys
work, name, rounds, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pooled = {}
for r in range(1, rounds + 1):
    for x in json.load(open(f"{work}/{name}-{r}.json"))["results"]:
        pooled.setdefault(x["command"], []).extend(x["times"])
ref = statistics.median(pooled["barge"])
print(f"\n{name}: {size / 2**20:.0f} MiB, {len(pooled['barge'])} runs per command (pooled)")
print("| command | median (ms) | min - max (ms) | throughput (MiB/s, median) | time vs barge |")
print("| --- | --- | --- | --- | --- |")
for cmd, times in pooled.items():
    med = statistics.median(times)
    print(f"| {cmd} | {med * 1e3:.1f} | {min(times) * 1e3:.1f} - {max(times) * 1e3:.1f} "
          f"| {size / 2**20 / med:.0f} | {med / ref:.2f}x |")
EOF
}

big=(barge "$barge_hash $work/big.bin")
small=(barge "$barge_hash $work/small")
if command -v b3sum >/dev/null; then
    big+=(b3sum "b3sum $work/big.bin")
    small+=(b3sum "b3sum $work/small/*")
fi
big+=(sha256sum "sha256sum $work/big.bin" md5sum "md5sum $work/big.bin")
small+=(sha256sum "sha256sum $work/small/*" md5sum "md5sum $work/small/*")

run_set one_file_256MiB $((256 << 20)) "${big[@]}"
run_set 2000_files_64KiB $((2000 << 16)) "${small[@]}"
