#!/usr/bin/env python3
"""Prints a Markdown table of criterion results: group, id, median time and
throughput. Usage: bench-table.py [CRITERION_DIR] (default target/criterion)."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
rows = []
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
        continue
    est = json.load(open(os.path.join(dirpath, "estimates.json")))
    bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
    ns = est["median"]["point_estimate"]
    thr = bench.get("throughput") or {}
    if "Bytes" in thr:
        t = f'{thr["Bytes"] / ns:.1f} GB/s'
    elif "Elements" in thr:
        t = f'{thr["Elements"] / ns:.2f} G/s'
    else:
        t = ""
    rows.append((bench["group_id"], bench.get("function_id") or "", bench.get("value_str") or "", ns, t))
rows.sort()
print("| kernel | backend | size | median | throughput |")
print("|---|---|---|---|---|")
for g, f, v, ns, t in rows:
    ms = ns / 1e6
    tm = f"{ms:.3f} ms" if ms >= 0.01 else f"{ns / 1e3:.2f} µs"
    print(f"| {g} | {f} | {v} | {tm} | {t} |")
