#!/usr/bin/env python3
"""Turns benches/peers.sh's runs.tsv into the Markdown tables of BENCHMARKS.md.

usage: peers_table.py RUNS_TSV VERSIONS_TXT

Medians over the successful runs only; a failed run (non-zero exit, or a
destination whose file count or total bytes differ from the source's) is
counted in the "failed" column and never in a median. "x barge" is the tool's
median over barge's: above 1, barge was faster.
"""
import csv
import os
import statistics
import sys
from collections import OrderedDict

# The sizes the runs used (peers.sh exports them), for the labels.
SMALL = f"{int(os.environ.get('SMALL_FILES', '10000')):,}"
BIG_MIB = int(os.environ.get("BIG_MIB", "1024"))
BIG = f"{BIG_MIB // 1024} GiB" if BIG_MIB % 1024 == 0 else f"{BIG_MIB} MiB"
SCENARIOS = {
    "small-down": f"{SMALL} small files, download",
    "small-up": f"{SMALL} small files, upload",
    "noop-down": f"no-op resync of the {SMALL} files (download side)",
    "big-down": f"one {BIG} file, download",
    "big-up": f"one {BIG} file, upload",
    "four-down": f"{BIG} as four {BIG_MIB // 4} MiB files, download",
    "four-up": f"{BIG} as four {BIG_MIB // 4} MiB files, upload",
}
PEERS = ("lftp", "rclone", "rclone-pypi")


def per_tool_table(groups, tools, stats, cell):
    """One row per (RTT, protocol, scenario), one cell(runs, good walls) per tool."""
    print("| RTT | protocol | scenario | " + " | ".join(tools) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in tools) + " |")
    for key, by_tool in groups.items():
        cells = [cell(*stats[key + (tool,)]) if tool in by_tool else "-" for tool in tools]
        rtt, proto, scenario = key
        print(f"| {rtt} ms | {proto} | {SCENARIOS.get(scenario, scenario)} | " + " | ".join(cells) + " |")


def main():
    runs_path, versions_path = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(runs_path), delimiter="\t"))
    groups = OrderedDict()
    tools = []
    for r in rows:
        key = (int(r["rtt_ms"]), r["proto"], r["scenario"])
        groups.setdefault(key, {}).setdefault(r["tool"], []).append(r)
        if r["tool"] not in tools:
            tools.append(r["tool"])
    print("Versions:\n")
    for line in open(versions_path):
        print(f"- {line.strip()}")
    print()
    print("Median wall seconds over the successful runs (runs that failed are counted, never timed);")
    print("in brackets, the tool's median over barge's (above 1: barge was faster). Last column: the")
    print("better peer's median over barge's.\n")
    loads = {}
    for r in rows:
        if r.get("load1"):
            loads.setdefault(int(r["rtt_ms"]), []).append(float(r["load1"]))
    for rtt, ls in loads.items():
        print(f"Load (1-minute average as each run started, {rtt} ms runs): median {statistics.median(ls):.1f}, "
              f"range {min(ls):.1f}-{max(ls):.1f} on 2 cores.\n")
    print("| RTT | protocol | scenario | " + " | ".join(tools) + " | best peer / barge |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in tools) + " | --- |")
    stats = {}
    for key, by_tool in groups.items():
        med = {}
        for tool, rs in by_tool.items():
            good = [float(r["wall_s"]) for r in rs if r["ok"] == "1"]
            med[tool] = statistics.median(good) if good else None
            stats[key + (tool,)] = (rs, good)
        cells = []
        base = med.get("barge")
        for tool in tools:
            if tool not in by_tool:
                cells.append("-")
                continue
            rs, good = stats[key + (tool,)]
            failed = len(rs) - len(good)
            if med[tool] is None:
                cells.append(f"failed ({failed}/{len(rs)})")
                continue
            text = f"{med[tool]:.2f}"
            if base and tool != "barge":
                text += f" ({med[tool] / base:.2f}x)"
            if failed:
                text += f", {failed}/{len(rs)} failed"
            cells.append(text)
        peers = [med[t] for t in PEERS if med.get(t) is not None]
        best = f"**{min(peers) / base:.2f}x**" if peers and base else "-"
        rtt, proto, scenario = key
        print(f"| {rtt} ms | {proto} | {SCENARIOS.get(scenario, scenario)} | " + " | ".join(cells) + f" | {best} |")
    print()
    print("Peak RSS (MiB, the highest of the runs, `/usr/bin/time -f %M`) and CPU seconds (user + system,")
    print("median) of the client process; lftp's ssh children (SFTP) count in its CPU, not in its RSS.\n")
    def rss_cpu(rs, good):
        rss = max(int(r["peak_rss_kib"] or 0) for r in rs) / 1024
        cpu = statistics.median(float(r["cpu_s"] or 0) for r in rs)
        return f"{rss:.0f} MiB, {cpu:.1f} s"

    per_tool_table(groups, tools, stats, rss_cpu)
    print()
    print("Spread and CPU use: min-max wall seconds of the successful runs, then the client's median")
    print("CPU seconds over its median wall seconds (1.0 = one core busy all along; 2 cores in all,")
    print("shared with the servers).\n")

    def spread(rs, good):
        if not good:
            return "-"
        cpu = statistics.median(float(r["cpu_s"] or 0) for r in rs if r["ok"] == "1")
        return f"{min(good):.2f}-{max(good):.2f}, CPU/wall {cpu / statistics.median(good):.2f}"

    per_tool_table(groups, tools, stats, spread)
    touched = [r for r in rows if r["ok"] == "1" and "no-op touched" in r["note"]]
    if touched:
        print("\nNo-op runs that rewrote files or set their times again (inode or ctime changed):\n")
        for r in touched:
            print(f"- {r['rtt_ms']} ms {r['proto']} {r['scenario']} {r['tool']} run {r['run']}: {r['note']}")
    failures = [r for r in rows if r["ok"] != "1"]
    if failures:
        print("\nFailed runs:\n")
        for r in failures:
            print(f"- {r['rtt_ms']} ms {r['proto']} {r['scenario']} {r['tool']} run {r['run']}: {r['note']}")
    print()


if __name__ == "__main__":
    main()
