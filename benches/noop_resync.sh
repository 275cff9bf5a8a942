#!/usr/bin/env bash
# No-op resync of a 100,000-file local tree: barge vs rsync -a (and rclone,
# lftp for context when installed), same run, same source tree, warm page
# cache. See BENCHMARKS.md.
#
# usage: benches/noop_resync.sh [WORKDIR]
#   WORKDIR  where the trees go (default: a new directory under /var/tmp,
#            removed at the end unless KEEP=1). The source tree is reused when
#            WORKDIR already holds one.
# env:     RUNS=10 (timed runs per tool and round), ROUNDS=3, DIRS=1000,
#          FILES_PER_DIR=100,
#          TOOLS="barge rsync rclone lftp" (those not installed are skipped),
#          BREAKDOWN=1 (then time barge's steps: examples/resync_breakdown.rs)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-10}"
rounds="${ROUNDS:-3}"
dirs="${DIRS:-1000}"
per_dir="${FILES_PER_DIR:-100}"
tools="${TOOLS:-barge rsync rclone lftp}"

if [[ $# -ge 1 ]]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d /var/tmp/barge-noop.XXXXXX)"
    [[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"
src="$work/src"

echo "== building barge (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin barge --example resync_breakdown)
barge="$repo/target/release/barge"

have() { command -v "$1" >/dev/null 2>&1; }
have hyperfine || { echo "hyperfine is required (apt-get install -y hyperfine)" >&2; exit 2; }

if [[ ! -f "$work/src.done" || "$(cat "$work/src.done")" != "$dirs x $per_dir" ]]; then
    echo "== generating $dirs x $per_dir files of 0-4 KiB in $src" >&2
    rm -rf "$src"
    python3 - "$src" "$dirs" "$per_dir" <<'EOF'
import os, random, sys
root, dirs, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20240601)
for d in range(dirs):
    dpath = os.path.join(root, f"dir-{d:04}")
    os.makedirs(dpath)
    for f in range(per_dir):
        with open(os.path.join(dpath, f"file-{f:04}.dat"), "wb") as out:
            out.write(rng.randbytes(rng.randint(0, 4096)))
EOF
    echo "$dirs x $per_dir" >"$work/src.done"
fi
echo "== source: $(find "$src" -type f | wc -l) files, $(du -sh "$src" | cut -f1)" >&2

enabled() { [[ " $tools " == *" $1 "* ]] && { [[ $1 == barge ]] || have "$1"; }; }

# The initial mirrors (not timed; in a reused WORKDIR they only bring the
# mirrors up to date), then one untimed resync each to check that it really
# is a no-op.
declare -a names cmds
if enabled barge; then
    "$barge" sync "$src" "$work/dst-barge" --state "$work/state.db" -q
    summary="$("$barge" sync "$src" "$work/dst-barge" --state "$work/state.db" --json | tail -n 1)"
    echo "   barge resync summary: $summary" >&2
    python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s.get("files_transferred",0)==0, s' "$summary"
    names+=(barge)
    cmds+=("$barge sync $src $work/dst-barge --state $work/state.db -q")
fi
if enabled rsync; then
    rsync -a "$src/" "$work/dst-rsync/"
    changes="$(rsync -a --itemize-changes "$src/" "$work/dst-rsync/" | wc -l)"
    echo "   rsync resync itemized changes: $changes" >&2
    [[ "$changes" == 0 ]]
    names+=(rsync)
    cmds+=("rsync -a $src/ $work/dst-rsync/")
fi
if enabled rclone; then
    rclone sync --config /dev/null "$src" "$work/dst-rclone"
    echo "   rclone resync: $(rclone sync --config /dev/null --stats-one-line -v "$src" "$work/dst-rclone" 2>&1 | tail -n 1)" >&2
    names+=(rclone)
    cmds+=("rclone sync --config /dev/null $src $work/dst-rclone")
fi
if enabled lftp; then
    # lftp mirrors local to local through its file: protocol; without the
    # `open file:///` it answers "Not connected".
    lftp -c "open file:///; mirror $src $work/dst-lftp"
    echo "   lftp resync: $(lftp -c "open file:///; mirror --verbose=1 $src $work/dst-lftp" | wc -l) lines of changes" >&2
    names+=(lftp)
    cmds+=("lftp -c 'open file:///; mirror $src $work/dst-lftp'")
fi

# hyperfine runs one command's runs back to back; on a shared machine the
# load drifts, so the runs are split over ROUNDS hyperfine calls, with the
# tools' order reversed every other round, and all runs pooled.
echo "== timing no-op resyncs: $rounds rounds of hyperfine -N --warmup 1 --runs $runs" >&2
for round in $(seq 1 "$rounds"); do
    order=("${!names[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("$i"); done
    fi
    args=()
    for i in "${order[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
    hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/noop-$round.json" "${args[@]}" >&2
done

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
pooled, cpu, per_round = {}, {}, []
for r in range(1, rounds + 1):
    results = json.load(open(f"{work}/noop-{r}.json"))["results"]
    per_round.append({x["command"]: statistics.median(x["times"]) for x in results})
    for x in results:
        pooled.setdefault(x["command"], []).extend(x["times"])
        cpu.setdefault(x["command"], []).append(x["user"] + x["system"])
ref = statistics.median(pooled["rsync"]) if "rsync" in pooled else None
runs = len(next(iter(pooled.values())))
print(f"{rounds} rounds, {runs} runs per tool in all (pooled)")
print("| tool | median (s) | min (s) | max (s) | CPU user+sys per run (s) | median vs rsync | per-round ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, times in pooled.items():
    med = statistics.median(times)
    ratio = f"{med / ref:.2f}x" if ref else "n/a"
    rr = [p[name] / p["rsync"] for p in per_round if "rsync" in p]
    spread = f"{min(rr):.2f}x - {max(rr):.2f}x" if rr else "n/a"
    print(f"| {name} | {med:.3f} | {min(times):.3f} | {max(times):.3f} | {statistics.mean(cpu[name]):.3f} "
          f"| {ratio} | {spread} |")
EOF

if enabled barge && [[ "${BREAKDOWN:-1}" == 1 ]]; then
    echo "== where barge's time goes (medians of $runs rounds)" >&2
    "$repo/target/release/examples/resync_breakdown" "$src" "$work/dst-barge" "$work/state.db" "$runs"
fi
