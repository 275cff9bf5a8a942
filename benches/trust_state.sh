#!/usr/bin/env bash
# A no-op backup of an unchanged 100,000-file tree to an SFTP server, with
# and without --trust-state, at 0 ms and through the WAN emulator at 20 ms.
# See BENCHMARKS.md, section "--trust-state: no-op backups without a
# remote listing".
#
# usage: benches/trust_state.sh          (env: FILES=100000 RUNS=3 RTTS="0 20"
#                                          WORK=/dev/shm/barge-trust)
#
# Needs the suite's servers and user (tests/support/install.sh, run as root),
# and builds barge and the wanem example in release mode.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
files="${FILES:-100000}"
runs="${RUNS:-3}"
rtts="${RTTS:-0 20}"
work="${WORK:-/dev/shm/barge-trust}"
target="${CARGO_TARGET_DIR:-$repo/target}"
servers="$target/test-servers"
user=bargetest

log() { echo "trust_state: $(date -u +%H:%M:%S) $*" >&2; }

cd "$repo"
log "building release barge and wanem"
cargo build --release --locked --bin barge --example wanem >&2
barge="$target/release/barge"
wanem="$target/release/examples/wanem"
bash tests/support/install.sh >&2

mkdir -p "$work"
src="$work/src"
if [ ! -f "$work/tree.done" ]; then
    log "generating $files files"
    rm -rf "$src"
    python3 - "$src" "$files" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
per_dir = 1000
for i in range(n):
    d = os.path.join(root, f"d{i // per_dir // 10:02d}", f"s{i // per_dir:03d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(rng.randbytes(rng.randint(0, 2048)))
EOF
    touch "$work/tree.done"
fi

# sshd on 127.0.0.1 ($port, known_hosts in $inst, pids in ${pids[@]}).
# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
start_sshd

dst="$work/dst"
rm -rf "$dst" && mkdir -p "$dst" && chown "$user:" "$dst"
results="$work/results.tsv"
: >"$results"
key="$servers/ssh/client_ed25519"

for rtt in $rtts; do
    host=127.0.0.1
    if [ "$rtt" != 0 ]; then
        "$wanem" --listen 127.0.0.2 --to 127.0.0.1 --ports "$port" --delay-ms "$((rtt / 2))" >"$inst/wanem.log" 2>&1 &
        pids+=($!)
        sleep 0.5
        host=127.0.0.2
    fi
    url="sftp://$user@$host:$port$dst"
    state="$work/state-$rtt.db"
    common=(--identity "$key" --known-hosts "$inst/known_hosts" --state "$state" -q --json)
    if [ ! -f "$work/uploaded" ]; then
        log "initial upload of $files files (untimed)"
        "$barge" sync "$src" "$url" "${common[@]}" >/dev/null
        touch "$work/uploaded"
    fi
    log "rtt $rtt ms: --verify-state (lists the destination, records it)"
    "$barge" sync "$src" "$url" "${common[@]}" --verify-state >/dev/null
    for run in $(seq 1 "$runs"); do
        for mode in listed trusted; do
            extra=()
            [ "$mode" = trusted ] && extra=(--trust-state)
            out="$(/usr/bin/time -f '%e %M' "$barge" sync "$src" "$url" "${common[@]}" "${extra[@]}" 2>&1 >"$work/run.json" | tail -1)"
            # A no-op must be one: nothing sent, nothing deleted.
            grep -q '"files_transferred":0,' "$work/run.json" || { cat "$work/run.json" >&2; exit 1; }
            log "rtt $rtt ms run $run $mode: wall ${out% *} s, peak ${out#* } KiB"
            printf '%s\t%s\t%s\t%s\n' "$rtt" "$mode" "${out% *}" "${out#* }" >>"$results"
        done
    done
done

log "medians (rtt, mode, wall s, peak RSS MiB):"
python3 - "$results" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rtt, mode, wall, rss = line.split()
    rows[(int(rtt), mode)].append((float(wall), int(rss)))
for (rtt, mode), v in sorted(rows.items()):
    walls = [w for w, _ in v]
    print(f"| {rtt} ms | {mode} | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | {max(r for _, r in v) / 1024:.0f} MiB |")
EOF
