#!/usr/bin/env bash
# Listing one SFTP directory of 25,000, 50,000 and 100,000 entries: the time
# must grow linearly with the size. `barge plan` against an empty
# local destination, so the run is the listing plus planning.
# See BENCHMARKS.md, section "One big SFTP directory".
#
# usage: benches/big_dir.sh     (env: SIZES="25000 50000 100000" RUNS=3 WORK=/dev/shm/barge-bigdir)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${SIZES:-25000 50000 100000}"
runs="${RUNS:-3}"
work="${WORK:-/dev/shm/barge-bigdir}"
target="${CARGO_TARGET_DIR:-$repo/target}"
servers="$target/test-servers"
user=bargetest

cd "$repo"
cargo build --release --locked --bin barge >&2
barge="$target/release/barge"
bash tests/support/install.sh >&2
mkdir -p "$work"
for n in $sizes; do
    [ -d "$work/dir$n" ] && continue
    python3 - "$work/dir$n" "$n" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
for i in range(n):
    open(os.path.join(d, f"entry-{i:07d}"), "wb").close()
EOF
done
# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
start_sshd
mkdir -p "$work/empty"
echo "| entries | wall s, median (min-max) | microseconds per entry |"
echo "| --- | --- | --- |"
for n in $sizes; do
    walls=()
    for _ in $(seq 1 "$runs"); do
        t0=$(date +%s.%N)
        "$barge" plan "sftp://$user@127.0.0.1:$port$work/dir$n" "$work/empty" --identity "$servers/ssh/client_ed25519" \
            --known-hosts "$inst/known_hosts" --state "$work/state-$n.db" -q >/dev/null
        walls+=("$(echo "$(date +%s.%N) - $t0" | bc)")
    done
    python3 - "$n" "${walls[@]}" <<'EOF'
import statistics, sys
n, walls = int(sys.argv[1]), sorted(float(w) for w in sys.argv[2:])
m = statistics.median(walls)
print(f"| {n:,} | {m:.2f} ({walls[0]:.2f}-{walls[-1]:.2f}) | {m / n * 1e6:.1f} |")
EOF
done
