#!/usr/bin/env bash
# An A/B of one FTP upload on loopback, tools alternating round by round
# on an otherwise idle machine: proftpd (the suite's unpacked package,
# benches/support/ftpd.sh) on 127.0.0.1, a 1 GiB random file in /dev/shm.
#
#   benches/ftp_upload_ab.sh ROUNDS TOOL...
#   TOOL: lftp | rclone[:BINARY] | barge:BINARY[:EXTRA ARGUMENTS]
#   env: PAUSE=1 (seconds between runs, after a sync), BIGSRC=file to send,
#        PORT=24100, BARGE_TEST_SERVERS=target/test-servers
#
# Prints one line per run: round, tool, "wall peak_rss_kib user sys", bytes
# that arrived. Used for BENCHMARKS.md section 12 (the FTP 1 GiB upload).
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
servers="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
user=bargetest
password="barge-test-password" # the test user's (tests/servers/install.sh)
ftp_server=proftpd
ftp_port=${PORT:-24100}
pids=()
die() {
    echo "$*" >&2
    exit 1
}
# shellcheck source=support/ftpd.sh
source "$repo/benches/support/ftpd.sh"
w=/dev/shm/barge-ftp-ab
rm -rf "$w" && mkdir -p "$w/root" "$w/src" "$w/state"
chmod 777 "$w/root"
big="${BIGSRC:-/dev/shm/barge-ab-1g.bin}"
[[ -f $big ]] || head -c $((1 << 30)) /dev/urandom >"$big"
cp "$big" "$w/src/big.bin"
start_ftpd "$w/srv" "$w/root" 127.0.0.1
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
export RCLONE_CONFIG=/dev/null RCLONE_FTP_USER="$user"
RCLONE_FTP_PASS="$(rclone obscure "$password")"
export RCLONE_FTP_PASS
rounds=$1
shift
for round in $(seq 1 "$rounds"); do
    for tool in "$@"; do
        rm -rf "$w/root/up" "$w/state"/*
        mkdir -p "$w/root/up" && chmod 777 "$w/root/up"
        sync
        sleep "${PAUSE:-1}"
        case $tool in
        rclone | rclone:*)
            bin=${tool#rclone}
            bin=${bin#:}
            cmd=("${bin:-rclone}" copy --transfers 16 "$w/src" ":ftp,host=127.0.0.1,port=$ftp_port:/up")
            ;;
        lftp) cmd=(lftp -c "set cmd:fail-exit yes; open -u $user,$password ftp://127.0.0.1:$ftp_port; mirror -R --parallel=16 $w/src /up") ;;
        barge:*)
            IFS=: read -r _ bin extra <<<"$tool"
            # shellcheck disable=SC2206
            cmd=("$bin" sync "$w/src" "ftp://$user@127.0.0.1:$ftp_port/up" --state "$w/state/s.db" -q $extra)
            ;;
        *) die "unknown tool $tool" ;;
        esac
        BARGE_PASSWORD=$password /usr/bin/time -f "%e %M %U %S" -o "$w/time" "${cmd[@]}" >/dev/null 2>"$w/err" ||
            echo "$tool failed: $(tail -n 2 "$w/err")"
        printf '%s\t%s\t%s\t%s\n' "$round" "$tool" "$(cat "$w/time")" "$(stat -c %s "$w/root/up/big.bin" 2>/dev/null)"
    done
done
