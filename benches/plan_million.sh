#!/usr/bin/env bash
# Planning two 1,000,000-entry listings: time and peak memory of a whole
# process that builds the listings and plans once (examples/plan_million.rs),
# run RUNS times under /usr/bin/time -v; medians printed. The peak includes
# the listings themselves. The second table is the same with a full state map
# (--synced), as a resync after a first sync loads it.
#
# usage: benches/plan_million.sh        env: RUNS=5
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-5}"
cd "$repo"
cargo build --release --quiet --example plan_million
bin="$repo/target/release/examples/plan_million"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

timer=()
if [[ -x /usr/bin/time ]]; then timer=(/usr/bin/time -v -o); fi

for variant in plain synced; do
    flag=()
    [[ $variant == synced ]] && flag=(--synced)
    for run in $(seq 1 "$runs"); do
        if [[ ${#timer[@]} -gt 0 ]]; then
            "${timer[@]}" "$out/$variant-$run.time" "$bin" "${flag[@]}" >"$out/$variant-$run.out"
        else
            "$bin" "${flag[@]}" >"$out/$variant-$run.out"
        fi
        echo "   $variant run $run: $(cat "$out/$variant-$run.out")" >&2
    done
done

python3 - "$out" "$runs" <<'EOF'
import os, re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
for variant in ("plain", "synced"):
    rows = []
    for run in range(1, runs + 1):
        kv = dict(p.split("=") for p in open(f"{out}/{variant}-{run}.out").read().split())
        tfile = f"{out}/{variant}-{run}.time"
        if os.path.exists(tfile):
            t = open(tfile).read()
            kv["time_maxrss_mib"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
            m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
            kv["process_s"] = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        rows.append(kv)
    first = rows[0]
    print(f"\n{variant}: src {first['src_entries']} entries, dst {first['dst_entries']}, "
          f"synced records {first['synced_records']}, plan: {first['copies']} copies, {first['deletes']} deletes, "
          f"{first['set_mtimes']} set-mtimes, {first['unchanged']} unchanged; {runs} runs")
    print("| measure | median | min | max |")
    print("| --- | --- | --- | --- |")
    for key, label in [("plan_s", "plan() time (s)"), ("build_s", "building the listings (s)"),
                       ("synced_s", "building the state map (s)"),
                       ("process_s", "whole process, wall (s)"),
                       ("hwm_listings_mib", "peak RSS once listings are built (MiB)"),
                       ("peak_rss_mib", "peak RSS, VmHWM at exit (MiB)"),
                       ("time_maxrss_mib", "peak RSS, /usr/bin/time -v (MiB)")]:
        vals = [float(r[key]) for r in rows if key in r]
        if vals:
            print(f"| {label} | {statistics.median(vals):.3f} | {min(vals):.3f} | {max(vals):.3f} |")
EOF
