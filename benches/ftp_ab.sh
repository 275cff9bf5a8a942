#!/usr/bin/env bash
# An A/B of one FTP transfer on loopback, tools alternating round by round
# on an otherwise idle machine: proftpd (the suite's unpacked package,
# tests/support/ftpd.sh) on 127.0.0.1, everything in /dev/shm.
#
#   benches/ftp_ab.sh ROUNDS TOOL...
#   TOOL: lftp | rclone[:BINARY] | barge:BINARY[:EXTRA ARGUMENTS]
#   env: DIRECTION=up (local to server) or down (server to local)
#        TREE=dir to send (default: a directory holding one 1 GiB random
#             file, BIGSRC=/dev/shm/barge-ab-1g.bin, made once; peers.sh's
#             small-file tree is WORK/srv/small)
#        PAUSE=1 (seconds between runs, after a sync), PORT=24100,
#        BARGE_TEST_SERVERS=target/test-servers
#
# Prints one line per run: round, tool, "wall peak_rss_kib user sys", then
# the files and bytes that arrived. Used for the paired FTP 1 GiB upload
# in BENCHMARKS.md, section "FTP on loopback, every peer".
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
servers="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
user=bargetest
password="barge-test-password" # the test user's (tests/support/install.sh)
ftp_server=proftpd
ftp_port=${PORT:-24100}
direction=${DIRECTION:-up}
pids=()
die() {
    echo "$*" >&2
    exit 1
}
# shellcheck source=tests/support/ftpd.sh
source "$repo/tests/support/ftpd.sh"
w=/dev/shm/barge-ftp-ab
rm -rf "$w" && mkdir -p "$w/root" "$w/state"
chmod 777 "$w/root"
if [[ -n ${TREE:-} ]]; then
    [[ -d $TREE ]] || die "TREE=$TREE is not a directory"
    cp -a "$TREE" "$w/src"
else
    big="${BIGSRC:-/dev/shm/barge-ab-1g.bin}"
    [[ -f $big ]] || head -c $((1 << 30)) /dev/urandom >"$big"
    mkdir -p "$w/src" && cp "$big" "$w/src/big.bin"
fi
# Downloads read the tree from the server's root.
[[ $direction == down ]] && cp -a "$w/src" "$w/root/tree" && chmod -R a+rX "$w/root/tree"
start_ftpd "$w/srv" "$w/root" 127.0.0.1
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
export RCLONE_CONFIG=/dev/null RCLONE_FTP_USER="$user"
RCLONE_FTP_PASS="$(rclone obscure "$password")"
export RCLONE_FTP_PASS
url="ftp://$user@127.0.0.1:$ftp_port"
rclone_remote=":ftp,host=127.0.0.1,port=$ftp_port:"
case $direction in
up) from=("$w/src" /up) to=("$w/root/up") ;;
down) from=(/tree "$w/dl") to=("$w/dl") ;;
*) die "DIRECTION is up or down" ;;
esac
rounds=$1
shift
for round in $(seq 1 "$rounds"); do
    for tool in "$@"; do
        rm -rf "$w/root/up" "$w/dl" "$w/state"/*
        mkdir -p "$w/root/up" && chmod 777 "$w/root/up"
        sync
        sleep "${PAUSE:-1}"
        case $tool in
        rclone | rclone:*)
            bin=${tool#rclone}
            bin=${bin#:}
            if [[ $direction == up ]]; then
                cmd=("${bin:-rclone}" copy --transfers 16 "${from[0]}" "$rclone_remote${from[1]}")
            else
                cmd=("${bin:-rclone}" copy --transfers 16 "$rclone_remote${from[0]}" "${from[1]}")
            fi
            ;;
        lftp)
            mirror="mirror --parallel=16 ${from[0]} ${from[1]}"
            [[ $direction == up ]] && mirror="mirror -R --parallel=16 ${from[0]} ${from[1]}"
            cmd=(lftp -c "set cmd:fail-exit yes; open -u $user,$password ftp://127.0.0.1:$ftp_port; $mirror")
            ;;
        barge:*)
            IFS=: read -r _ bin extra <<<"$tool"
            if [[ $direction == up ]]; then pair=("${from[0]}" "$url${from[1]}"); else pair=("$url${from[0]}" "${from[1]}"); fi
            # shellcheck disable=SC2206
            cmd=("$bin" sync "${pair[@]}" --state "$w/state/s.db" -q $extra)
            ;;
        *) die "unknown tool $tool" ;;
        esac
        BARGE_PASSWORD=$password /usr/bin/time -f "%e %M %U %S" -o "$w/time" "${cmd[@]}" >/dev/null 2>"$w/err" ||
            echo "$tool failed: $(tail -n 2 "$w/err")"
        arrived="$(find "${to[0]}" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {print n+0, b+0}')"
        printf '%s\t%s\t%s\t%s\n' "$round" "$tool" "$(cat "$w/time")" "$arrived"
    done
done
