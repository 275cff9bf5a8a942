#!/usr/bin/env bash
# Soak: syncs with random changes on both sides, in every direction, for a
# long time; every mirror must be exact and barge's memory must stay flat.
# Not part of CI; the result is in BENCHMARKS.md,
# section "Soak".
#
# usage: nice -n 10 benches/soak.sh                   # 30 minutes
#        DURATION=120 benches/soak.sh                 # a 2-minute smoke run
#        SOAK_SEED=1234 benches/soak.sh               # replay a failed run
#
# What it does:
#   1. builds release barge (--locked; CARGO_TARGET_DIR is honoured;
#      BARGE_BIN=path skips the build) and installs the test servers
#      (tests/support/install.sh; run as root);
#   2. generates three trees of FILES files from the seed: WORK/local, and
#      WORK/ftp and WORK/sftp, the roots of proftpd (FTP_SERVER=pure-ftpd
#      for pure-ftpd) and OpenSSH sshd (internal-sftp), both on 127.0.0.1;
#   3. loops until DURATION seconds have passed, one direction per
#      iteration in turn: local->FTP, FTP->local, local->SFTP, SFTP->local,
#      FTP->SFTP. Each iteration changes the source tree on disk (new files,
#      same-size rewrites, truncated and grown files, deletions, a removed
#      and a renamed directory, mtime-only changes, new empty directories;
#      new files make up for deleted ones, so the tree stays near FILES),
#      one in three also the destination (stray files, changed copies,
#      deletions), runs `barge sync --delete --force` under /usr/bin/time
#      (peak RSS), and compares the two trees on disk: every path, type,
#      size, whole-second mtime and SHA-256 must match;
#   4. stops at the first mismatch or non-zero exit with the seed and
#      iteration to replay (SOAK_SEED), leaving WORK as it is;
#   5. prints peak RSS per run and, at the end, per direction the median
#      of the first ten runs against the median of the last ten.
#
# --force: the random changes may empty a directory that held files at
# the last run, or shrink the tree by half, which barge rightly treats as
# a suspicious listing (exit 5, deletions held back); that stop is tested
# elsewhere (tests/it/safety.rs), here every run must reach an exact mirror.
#
# env (defaults):
#   DURATION=1800 (s)   SOAK_SEED=random   FILES=3000   FTP_SERVER=proftpd
#   WORK=/dev/shm/barge-soak (on tmpfs: the disk stays out of the figures)
#   PARALLEL= (barge --parallel; its default when empty)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${WORK:-/dev/shm/barge-soak}"
duration="${DURATION:-1800}"
seed="${SOAK_SEED:-$((RANDOM * 32768 + RANDOM))}"
files="${FILES:-3000}"
ftp_server="${FTP_SERVER:-proftpd}"
target="${CARGO_TARGET_DIR:-$repo/target}"
servers="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
tree="$repo/tests/support/soak_tree.py"
user=bargetest
password="barge-test-password" # the test user's (tests/support/install.sh)

log() { echo "soak: $(date -u +%H:%M:%S) $*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- 1. build, servers ------------------------------------------------------------
if [[ -z "${BARGE_BIN:-}" ]]; then
    log "building barge (release)"
    (cd "$repo" && cargo build --release --locked --quiet --bin barge)
    barge="$target/release/barge"
else
    barge="$BARGE_BIN"
fi
BARGE_TEST_SERVERS="$servers" bash "$repo/tests/support/install.sh"
servers="$(cd "$servers" && pwd)"
for t in /usr/bin/time python3 openssl ssh-keygen; do command -v "$t" >/dev/null || die "$t is missing"; done

# --- 2. trees ---------------------------------------------------------------------
rm -rf "$work"
mkdir -p "$work/state" "$work/runs"
work="$(cd "$work" && pwd)"
chmod 755 "$work"
log "seed $seed (replay: SOAK_SEED=$seed), $files files per tree, work $work"
python3 "$tree" gen "$work/local" "$seed" "$files"
python3 "$tree" gen "$work/ftp" "$((seed + 1))" "$files"
python3 "$tree" gen "$work/sftp" "$((seed + 2))" "$files"
chown -R "$user:" "$work/ftp" "$work/sftp"

# --- 3. servers -------------------------------------------------------------------
# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
start_sshd # sets port, inst and pids, and kills pids on exit
ssh_port=$port
# shellcheck source=tests/support/ftpd.sh
source "$repo/tests/support/ftpd.sh"
ftp_port=$((40000 + RANDOM % 10000))
start_ftpd "$work/ftpd" "$work/ftp" 127.0.0.1
log "$ftp_server on $ftp_port, sshd on $ssh_port"

# --- 4. the loop ------------------------------------------------------------------
export BARGE_PASSWORD="$password"
ftp_url="ftp://$user@127.0.0.1:$ftp_port/"
sftp_url="sftp://$user@127.0.0.1:$ssh_port$work/sftp"
sftp_flags=(--identity "$servers/ssh/client_ed25519" --known-hosts "$inst/known_hosts")
parallel=()
[[ -n "${PARALLEL:-}" ]] && parallel=(--parallel "$PARALLEL")
# name  source-dir  destination-dir  source-url  destination-url
directions=(
    "local-ftp $work/local $work/ftp $work/local $ftp_url"
    "ftp-local $work/ftp $work/local $ftp_url $work/local"
    "local-sftp $work/local $work/sftp $work/local $sftp_url"
    "sftp-local $work/sftp $work/local $sftp_url $work/local"
    "ftp-sftp $work/ftp $work/sftp $ftp_url $sftp_url"
)
results="$work/rss.tsv"
printf 'iteration\tdirection\texit\trss_kib\twall_s\tfiles\n' >"$results"
started=$SECONDS
i=0
while ((SECONDS - started < duration)); do
    read -r name src_dir dst_dir src_url dst_url <<<"${directions[i % ${#directions[@]}]}"
    step=$((seed * 1000003 + i))
    changes="$(python3 "$tree" mutate "$src_dir" "$step" source "$files")"
    if ((step % 3 == 0)); then
        changes+=" | destination: $(python3 "$tree" mutate "$dst_dir" "$((step + 7))" destination "$files")"
    fi
    chown -R "$user:" "$work/ftp" "$work/sftp"
    out="$work/runs/$((i % 10))"
    t0=$EPOCHREALTIME
    set +e
    /usr/bin/time -f %M -o "$out.rss" "$barge" sync "$src_url" "$dst_url" --delete --force --json \
        --state "$work/state/$name.db" "${sftp_flags[@]}" "${parallel[@]}" >"$out.json" 2>"$out.err"
    code=$?
    set -e
    wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
    rss=$(tail -n1 "$out.rss")
    if ((code != 0)); then
        cat "$out.err" >&2
        die "iteration $i ($name): barge exited $code; replay: SOAK_SEED=$seed (changes: $changes)"
    fi
    if ! summary="$(python3 "$tree" compare "$src_dir" "$dst_dir")"; then
        tail -n 20 "$out.err" >&2
        die "iteration $i ($name): the mirror is not exact; replay: SOAK_SEED=$seed (changes: $changes)"
    fi
    nfiles=${summary%% *}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$name" "$code" "$rss" "$wall" "$nfiles" >>"$results"
    log "$i $name exit $code rss ${rss} KiB ${wall}s, exact: $summary ($changes)"
    i=$((i + 1))
done

# --- 5. summary -------------------------------------------------------------------
log "done: $i iterations in $((SECONDS - started)) s, 0 mismatches, seed $seed"
python3 - "$results" <<'EOF'
import csv, statistics, sys
runs = {}
for row in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs.setdefault(row["direction"], []).append(int(row["rss_kib"]))
print(f"{'direction':<12} {'runs':>5} {'first-10 median KiB':>20} {'last-10 median KiB':>19} {'max KiB':>8}")
for name, rss in runs.items():
    print(f"{name:<12} {len(rss):>5} {statistics.median(rss[:10]):>20.0f} {statistics.median(rss[-10:]):>19.0f} {max(rss):>8}")
EOF
