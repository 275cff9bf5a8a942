#!/usr/bin/env bash
# Peak memory of mirroring a remote tree of 1,000,000 entries over SFTP:
# the first mirror (everything copied) and a no-op rerun, as bytes of peak
# RSS per entry. See BENCHMARKS.md, section "Memory: a 1,000,000-entry
# remote tree".
#
# usage: benches/million.sh     (env: FILES=1000000 WORK=/dev/shm/barge-million
#                               PHASES="mirror noop": "noop noop noop" reruns
#                               the no-op on the mirror a last run left;
#                               BARGE_BINS="old new": each phase run by each
#                               binary in turn, to compare two builds)
#
# Needs the suite's servers and user (tests/support/install.sh, run as root).
# About 3 GB of tmpfs at the peak (two trees of a million small files).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
files="${FILES:-1000000}"
work="${WORK:-/dev/shm/barge-million}"
target="${CARGO_TARGET_DIR:-$repo/target}"
servers="$target/test-servers"
user=bargetest

log() { echo "million: $(date -u +%H:%M:%S) $*" >&2; }

cd "$repo"
cargo build --release --locked --bin barge >&2
barge="$target/release/barge"
bash tests/support/install.sh >&2

mkdir -p "$work"
src="$work/src"
if [ ! -f "$work/tree.done" ]; then
    log "generating $files files (1,000 per directory, 0-64 bytes)"
    rm -rf "$src"
    python3 - "$src" "$files" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"d{i // 100000:02d}", f"s{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file-{i:07d}.dat"), "wb") as f:
        f.write(rng.randbytes(rng.randint(0, 64)))
EOF
    chown -R "$user:" "$src"
    touch "$work/tree.done"
fi
entries=$(find "$src" -mindepth 1 | wc -l)
log "$entries entries under $src"

# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
start_sshd

dst="$work/dst"
phases="${PHASES:-mirror noop}"
case " $phases " in
*" mirror "*) rm -rf "$dst" "$work/state.db"* ;;
*) [ -d "$dst" ] || { log "no mirror in $dst: run with a mirror phase first"; exit 1; } ;;
esac
url="sftp://$user@127.0.0.1:$port$src"
common=(--identity "$servers/ssh/client_ed25519" --known-hosts "$inst/known_hosts" --state "$work/state.db" -q --json)
for phase in $phases; do
    for bin in ${BARGE_BINS:-$barge}; do
        log "$phase: $bin sync $url $dst"
        /usr/bin/time -f '%e %U %S %M' -o "$work/time.$phase" "$bin" sync "$url" "$dst" "${common[@]}" >"$work/$phase.json"
        read -r wall user sys rss <"$work/time.$phase"
        summary="$(tail -1 "$work/$phase.json")"
        log "$phase: wall $wall s (user $user s, sys $sys s), peak RSS $rss KiB = $((rss * 1024 / entries)) bytes per entry; $summary"
        printf '| %s | %s | %s | %s s | %d MiB | %d |\n' "$phase" "$bin" "$entries" "$wall" "$((rss / 1024))" "$((rss * 1024 / entries))"
    done
done
[ "$(find "$dst" -mindepth 1 | wc -l)" = "$entries" ] || { log "the mirror is incomplete"; exit 1; }
