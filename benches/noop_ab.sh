#!/usr/bin/env bash
# A/B of two barge binaries on the no-op rows, where a change to a run's
# start (job identity, overlap check, state database checks) would show:
# a resync of a local tree (20,000 files) and of a proftpd tree (10,000
# files, the suite's unpacked package on loopback, tests/support/ftpd.sh);
# a first copy of the local tree into an empty destination (each
# temporary's write path: locks, fsync, rename); a first download of the
# proftpd tree; and with SFTP=1 the same
# 10,000 files from OpenSSH (tests/support/sshd.sh): a no-op resync and a
# first download.
# Each binary keeps its own state database; the two binaries run in turn,
# ROUNDS times (the first of each round alternating), RUNS runs each.
#
#   benches/noop_ab.sh OLD_BINARY NEW_BINARY
#   env: ROUNDS=3 RUNS=10 FILES=20000 FTP_FILES=10000 PORT=24300 SFTP=0
#        ROWS="local ftp copy ftpcopy sftp sftpcopy" (a subset to measure again)
#        BARGE_TEST_SERVERS=target/test-servers
#
# Prints hyperfine's mean and median per round and binary.
set -euo pipefail
[[ $# -eq 2 ]] || {
    echo "usage: $0 OLD_BINARY NEW_BINARY" >&2
    exit 2
}
old=$(realpath "$1") new=$(realpath "$2")
repo="$(cd "$(dirname "$0")/.." && pwd)"
servers="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
rounds=${ROUNDS:-3} runs=${RUNS:-10} files=${FILES:-20000} ftp_files=${FTP_FILES:-10000}
user=bargetest password="barge-test-password" ftp_server=proftpd ftp_port=${PORT:-24300}
pids=()
die() {
    echo "$*" >&2
    exit 1
}
# shellcheck source=tests/support/ftpd.sh
source "$repo/tests/support/ftpd.sh"
# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
w=/dev/shm/barge-noop-ab
rm -rf "$w" && mkdir -p "$w"
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$w"' EXIT

make_tree() { # DIR COUNT: COUNT small files in 100 directories
    python3 - "$1" "$2" <<'EOF'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.txt"), "w") as f:
        f.write(f"file {i}\n")
EOF
}

make_tree "$w/src" "$files"
mkdir -p "$w/root" && chmod 777 "$w/root"
make_tree "$w/root/tree" "$ftp_files"
chown -R "$user" "$w/root"
start_ftpd "$w/ftpd" "$w/root" 127.0.0.1
wait_port 127.0.0.1 "$ftp_port"
url="ftp://$user@127.0.0.1:$ftp_port/tree"
export BARGE_PASSWORD=$password XDG_STATE_HOME=$w/xdg
rows="local ftp copy ftpcopy"
if [[ ${SFTP:-0} == 1 ]]; then
    ftp_pids=("${pids[@]}")
    work=$w servers=$servers start_sshd
    pids+=("${ftp_pids[@]}")
    trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$w"' EXIT
    sftp_url="sftp://$user@127.0.0.1:$port$w/root/tree"
    sftp_args="--identity $servers/ssh/client_ed25519 --known-hosts $inst/known_hosts"
    rows="$rows sftp sftpcopy"
fi
rows=${ROWS:-$rows}

for tool in old new; do
    bin=${!tool}
    "$bin" sync "$w/src" "$w/dst-$tool" --state "$w/$tool-local.db" -q
    "$bin" sync "$url" "$w/ftp-$tool" --state "$w/$tool-ftp.db" -q
    if [[ ${SFTP:-0} == 1 ]]; then
        # shellcheck disable=SC2086 # two flags and their values
        "$bin" sync "$sftp_url" "$w/sftp-$tool" --state "$w/$tool-sftp.db" -q $sftp_args
    fi
done
for round in $(seq 1 "$rounds"); do
    # Each round starts with the other binary: the second of a pair runs
    # on a warmer (or busier) machine.
    order="old new"
    ((round % 2 == 0)) && order="new old"
    for tool in $order; do
        bin=${!tool}
        for row in $rows; do
            extra=""
            case $row in
            local) src=$w/src dst=$w/dst-$tool prepare=true ;;
            ftp) src=$url dst=$w/ftp-$tool prepare=true ;;
            copy) src=$w/src dst=$w/copy-$tool prepare="rm -rf $w/copy-$tool $w/$tool-copy.db" ;;
            ftpcopy) src=$url dst=$w/ftpcopy-$tool prepare="rm -rf $w/ftpcopy-$tool $w/$tool-ftpcopy.db" ;;
            sftp) src=$sftp_url dst=$w/sftp-$tool prepare=true extra=$sftp_args ;;
            sftpcopy) src=$sftp_url dst=$w/sftpcopy-$tool prepare="rm -rf $w/sftpcopy-$tool $w/$tool-sftpcopy.db" extra=$sftp_args ;;
            esac
            hyperfine -N -w 1 -r "$runs" --prepare "$prepare" --export-json "$w/h.json" \
                "$bin sync $src $dst --state $w/$tool-$row.db -q $extra" >/dev/null
            python3 - "$round" "$tool" "$row" "$w/h.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[4]))["results"][0]
print(f"round {sys.argv[1]} {sys.argv[2]:3} {sys.argv[3]:5} mean {r['mean']*1000:7.1f} ms  median {r['median']*1000:7.1f} ms")
EOF
        done
    done
done
