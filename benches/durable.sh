#!/usr/bin/env bash
# Durable copies against the peers' plain ones and the peers' followed by
# `sync`: one 1 GiB file, four 256 MiB files and 10,000 small files
# (100 directories of 100, 100 B to 16 KB; tree `small`), written to local disk
# (ext4, DISK) from local disk, proftpd, pure-ftpd and OpenSSH on loopback
# (their trees on tmpfs), same run, tools rotated run by run. barge makes
# each file durable before it takes its name; lftp, rclone, cp and rsync
# leave the data in the page cache, so each of their runs is timed twice:
# plain, and with a `sync` after it. See BENCHMARKS.md, "Durable copies".
#
#   benches/durable.sh BARGE [BARGE_B]
#   env: RUNS=3 DISK=/var/tmp/barge-durable TREES="big four small"
#        SOURCES="local proftpd pure-ftpd sftp" PARALLEL=4 (lftp, rclone;
#        16 for the small files, as benches/peers.sh)
#        BARGE_TEST_SERVERS=target/test-servers
#
# Prints one line per run (tsv: source tree tool run plain_s synced_s rss_kib)
# to DISK/runs.tsv and the medians at the end.
set -euo pipefail
[[ $# -ge 1 ]] || {
    echo "usage: $0 BARGE [BARGE_B]" >&2
    exit 2
}
barge=$(realpath "$1") barge_b=${2:+$(realpath "$2")}
repo="$(cd "$(dirname "$0")/.." && pwd)"
servers="$(cd "${BARGE_TEST_SERVERS:-$repo/target/test-servers}" && pwd)"
runs=${RUNS:-3} disk=${DISK:-/var/tmp/barge-durable} trees=${TREES:-big four small}
sources=${SOURCES:-local proftpd pure-ftpd sftp} parallel=${PARALLEL:-4}
user=bargetest password="barge-test-password" ftp_port=24500
w=/dev/shm/barge-durable
die() {
    echo "$*" >&2
    exit 1
}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$w" "$disk/dst"' EXIT
rm -rf "$w" && mkdir -p "$w/root" "$disk"
python3 - "$w/root" <<'EOF'
import os, random, sys
root = sys.argv[1]
def fill(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as out:
        while size > 0:
            n = min(size, 1 << 20)
            out.write(rng.randbytes(n))
            size -= n
os.makedirs(f"{root}/big")
fill(f"{root}/big/one-gib.bin", 1 << 30, 1)
os.makedirs(f"{root}/four")
for i in range(4):
    fill(f"{root}/four/part-{i}.bin", 1 << 28, 100 + i)
rng = random.Random(7)
for d in range(100):
    os.makedirs(f"{root}/small/d{d:03}")
    for f in range(100):
        with open(f"{root}/small/d{d:03}/f{f:03}.txt", "wb") as out:
            out.write(rng.randbytes(rng.randint(100, 16000)))
EOF
chown -R "$user" "$w/root" && chmod 755 "$w" "$w/root"
export BARGE_PASSWORD=$password XDG_STATE_HOME=$w/xdg RCLONE_CONFIG=/dev/null
export RCLONE_FTP_USER=$user RCLONE_FTP_HOST=127.0.0.1 RCLONE_SFTP_USER=$user RCLONE_SFTP_HOST=127.0.0.1
RCLONE_FTP_PASS="$(rclone obscure "$password")"
export RCLONE_FTP_PASS RCLONE_SFTP_KEY_FILE=$servers/ssh/client_ed25519

# shellcheck source=tests/support/ftpd.sh
source "$repo/tests/support/ftpd.sh"
# shellcheck source=tests/support/sshd.sh
source "$repo/tests/support/sshd.sh"
ftp_ports=()
for server in proftpd pure-ftpd; do
    [[ " $sources " == *" $server "* ]] || continue
    ftp_server=$server ftp_port=$((ftp_port + 400))
    start_ftpd "$w/$server" "$w/root" 127.0.0.1
    wait_port 127.0.0.1 "$ftp_port"
    ftp_ports+=("$server=$ftp_port")
done
port_of() {
    local p
    for p in "${ftp_ports[@]}"; do
        if [[ ${p%=*} == "$1" ]]; then echo "${p#*=}"; fi
    done
}
if [[ " $sources " == *" sftp "* ]]; then
    ftp_pids=("${pids[@]}")
    work=$w servers=$servers start_sshd
    pids+=("${ftp_pids[@]}")
    export RCLONE_SFTP_PORT=$port RCLONE_SFTP_KNOWN_HOSTS_FILE=$inst/known_hosts
    trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$w" "$disk/dst"' EXIT
fi

# files_and_bytes DIR: how many files under DIR and their bytes.
files_and_bytes() { find "$1" -type f -printf '%s\n' | awk '{n++; b += $1} END {print n + 0, b + 0}'; }

# words SOURCE TREE TOOL DEST: the command, in the array `cmd`.
words() {
    local src=$1 tree=$2 tool=$3 dst=$4 bin=$barge parallel=$parallel
    [[ $tool == barge-b ]] && bin=$barge_b
    [[ $tree == small ]] && parallel=16
    case "$src:$tool" in
    local:barge*) cmd=("$bin" sync "$w/root/$tree" "$dst" --state "$w/$tool.db" -q) ;;
    local:cp) cmd=(cp -r "$w/root/$tree" "$dst") ;;
    local:rsync) cmd=(rsync -a "$w/root/$tree/" "$dst/") ;;
    sftp:barge*)
        cmd=("$bin" sync "sftp://$user@127.0.0.1:$port$w/root/$tree" "$dst" --state "$w/$tool.db" -q
            --identity "$servers/ssh/client_ed25519" --known-hosts "$inst/known_hosts")
        ;;
    sftp:lftp)
        cmd=(lftp -c "set cmd:fail-exit yes; set sftp:connect-program 'ssh -a -x -i $servers/ssh/client_ed25519 \
-o UserKnownHostsFile=$inst/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes'; \
open -u $user, -p $port sftp://127.0.0.1; mirror --parallel=$parallel $w/root/$tree $dst")
        ;;
    sftp:rclone) cmd=(rclone copy --transfers "$parallel" ":sftp:$w/root/$tree" "$dst") ;;
    *:barge*) cmd=("$bin" sync "ftp://$user@127.0.0.1:$(port_of "$src")/$tree" "$dst" --state "$w/$tool.db" -q) ;;
    *:lftp)
        cmd=(lftp -c "set cmd:fail-exit yes; open -u $user,$password -p $(port_of "$src") ftp://127.0.0.1; \
mirror --parallel=$parallel /$tree $dst")
        ;;
    *:rclone) cmd=(rclone copy --transfers "$parallel" --ftp-port "$(port_of "$src")" ":ftp:/$tree" "$dst") ;;
    esac
}

results=$disk/runs.tsv
printf 'source\ttree\ttool\trun\tplain_s\tsynced_s\trss_kib\n' >"$results"
now() { date +%s%N; }
for run in $(seq 1 "$runs"); do
    for src in $sources; do
        tools=(barge ${barge_b:+barge-b})
        if [[ $src == local ]]; then tools+=(cp rsync); else tools+=(lftp rclone); fi
        n=${#tools[@]}
        for tree in $trees; do
            for ((k = 0; k < n; k++)); do
                tool=${tools[$(((k + run - 1) % n))]}
                dst=$disk/dst/$tool
                rm -rf "$disk/dst" "$w/$tool.db" && mkdir -p "$disk/dst" && sync
                words "$src" "$tree" "$tool" "$dst"
                started=$(now)
                # A failed run (rclone 1.60 against proftpd: 426) is said and left out.
                if ! /usr/bin/time -f '%M' -o "$w/time.out" "${cmd[@]}" >"$w/last.log" 2>&1; then
                    echo "$src $tree $tool run $run failed: $(tail -n 2 "$w/last.log" | tr '\n' ' ')" >&2
                    continue
                fi
                plain=$(now)
                sync
                synced=$(now)
                [[ "$(files_and_bytes "$dst")" == "$(files_and_bytes "$w/root/$tree")" ]] ||
                    die "$src $tree $tool: incomplete copy"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$src" "$tree" "$tool" "$run" \
                    "$(awk -v a="$started" -v b="$plain" 'BEGIN {printf "%.2f", (b - a) / 1e9}')" \
                    "$(awk -v a="$started" -v b="$synced" 'BEGIN {printf "%.2f", (b - a) / 1e9}')" \
                    "$(tail -n 1 "$w/time.out")" | tee -a "$results"
            done
        done
    done
done
python3 - "$results" <<'EOF'
import csv, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for row in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs[(row["source"], row["tree"], row["tool"])].append(row)
print("| source | tree | tool | plain s | with sync s | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- |")
for (src, tree, tool), rows in runs.items():
    med = lambda k: statistics.median(float(r[k]) for r in rows)
    print(f"| {src} | {tree} | {tool} | {med('plain_s'):.2f} | {med('synced_s'):.2f} | {med('rss_kib') / 1024:.0f} |")
EOF
