#!/usr/bin/env bash
# Runs the criterion benches (`cargo bench --bench core`) several times and
# pools their samples: on a shared, noisy machine one criterion run of 10
# samples is not enough. Prints, per benchmark, the median time per
# iteration over all samples, the min and max, each run's own median, and the
# median throughput.
#
# usage: benches/run_core.sh [CRITERION FILTER]     env: RUNS=3
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-3}"
cd "$repo"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo bench --bench core --no-run --quiet
for run in $(seq 1 "$runs"); do
    echo "== cargo bench --bench core, run $run of $runs (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    cargo bench --quiet --bench core -- "$@" >&2
    # Criterion keeps the last run's samples under target/criterion; save them.
    while IFS= read -r -d '' sample; do
        id="${sample#target/criterion/}"
        id="${id%/new/sample.json}"
        mkdir -p "$out/$run/$id"
        cp "$sample" "target/criterion/$id/new/benchmark.json" "$out/$run/$id/"
    done < <(find target/criterion -path '*/new/sample.json' -newer "$out" -print0)
done

python3 - "$out" "$runs" <<'EOF'
import json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
pooled, per_run, throughput = {}, {}, {}
for run in range(1, runs + 1):
    base = os.path.join(out, str(run))
    for dirpath, _, files in os.walk(base):
        if "sample.json" not in files:
            continue
        bench = os.path.relpath(dirpath, base)
        s = json.load(open(os.path.join(dirpath, "sample.json")))
        times = [t / n for t, n in zip(s["times"], s["iters"])]  # ns per iteration
        pooled.setdefault(bench, []).extend(times)
        per_run.setdefault(bench, []).append(statistics.median(times))
        throughput[bench] = json.load(open(os.path.join(dirpath, "benchmark.json"))).get("throughput")
print(f"| benchmark | median | min | max | per-run medians | samples | median throughput |")
print("| --- | --- | --- | --- | --- | --- | --- |")
ms = lambda ns: f"{ns / 1e6:.1f} ms"
for bench in sorted(pooled):
    times = pooled[bench]
    med = statistics.median(times)
    tp = throughput.get(bench) or {}
    if "Bytes" in tp:
        rate = f"{tp['Bytes'] / 2**30 / (med / 1e9):.2f} GiB/s"
    elif "Elements" in tp:
        rate = f"{tp['Elements'] / 1e6 / (med / 1e9):.2f} M entries/s"
    else:
        rate = "n/a"
    runs_txt = ", ".join(ms(m) for m in per_run[bench])
    print(f"| {bench} | {ms(med)} | {ms(min(times))} | {ms(max(times))} | {runs_txt} | {len(times)} | {rate} |")
EOF
