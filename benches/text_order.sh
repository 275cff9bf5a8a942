#!/usr/bin/env bash
# Remakes src/text-order.txt: the functions a release barge runs in the
# benchmark scenarios, which src/build.rs has the linker place together
# (BENCHMARKS.md section 16: the kernel maps code 64 KiB around each page
# first run, so executed code scattered over 10 MB of text mapped 6.5 MiB
# for a no-op).
#
#   benches/text_order.sh         # about 15 minutes; needs valgrind (apt)
#
# It builds release, runs benches/peers.sh's scenarios once each (RTT 0,
# FTP and SFTP) with barge under `valgrind --tool=callgrind`, and writes
# every function of barge's binary that ran, most widely used first (the
# number of runs that ran it), then in address order. Symbol names carry
# a hash of the crate's build settings, not of its source, so the list
# stays good across most edits; names that disappeared are skipped by the
# linker, new code is laid out after the listed functions.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
out=/dev/shm/barge-text-order
rm -rf "$out" && mkdir -p "$out/cg"
cd "$repo"
cargo build --release --locked
bin="$out/barge"
cp target/release/barge "$bin"
cat >"$out/wrap.sh" <<EOF
#!/usr/bin/env bash
if [[ \${1:-} == sync ]]; then
    exec valgrind --tool=callgrind --dump-instr=no --compress-strings=no --compress-pos=no \\
        --demangle=no --callgrind-out-file=$out/cg/out.%p "$bin" "\$@" 2>>"$out/valgrind.log"
fi
exec "$bin" "\$@"
EOF
chmod +x "$out/wrap.sh"
BARGE_BIN="$out/wrap.sh" BENCH_MD= RUNS=1 RTTS=0 PROTOS="ftp sftp" TOOLS=barge TIMEOUT=1800 \
    SCENARIOS="${SCENARIOS:-noop-down small-down small-up four-down four-up}" benches/peers.sh
nm -S --defined-only "$bin" | awk '$3 ~ /^[tTwW]$/ {print $4, $1}' >"$out/symbols"
python3 - "$out" >src/text-order.txt <<'PY'
import collections, glob, sys
out = sys.argv[1]
address = {}
for line in open(f"{out}/symbols"):
    name, addr = line.split()
    address[name] = int(addr, 16)
runs = collections.Counter()
for path in glob.glob(f"{out}/cg/out.*"):
    ran, ob = set(), ""
    for line in open(path, errors="replace"):
        if line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("fn=") and ob.endswith("/barge"):
            # callgrind marks recursion depth as name'2.
            name = line[3:].strip().split("'")[0]
            if name in address:
                ran.add(name)
    runs.update(ran)
for name in sorted(runs, key=lambda n: (-runs[n], address[n])):
    print(name)
PY
echo "src/text-order.txt: $(wc -l <src/text-order.txt) functions from $(ls "$out"/cg | wc -l) runs" >&2
