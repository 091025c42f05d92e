#!/usr/bin/env bash
# Builds the release executables (engine, test harnesses, benches) here and
# copies them, with tools/gpu-check.sh's helpers and the PyTorch reference
# scripts, into the git-ignored folder .gpu/ that travels to the GPU machine
# (which has no Rust toolchain). See README, "Running on a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu
mkdir -p .gpu/bin .gpu/reference
cargo build --release --bins --tests --benches --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = m["target"]["kind"][0]
        if m["profile"]["test"] and kind == "bin":
            kind = "bintest"
        name = {"lib": "lib", "bin": "bin", "bintest": "bintest", "test": "test", "bench": "bench"}.get(kind, kind) + "-" + m["target"]["name"]
        # only what gpu-check.sh runs: the rest needs ../shared or a cargo layout
        if name in ("bin-engine", "test-gpu", "test-box_ops", "test-roi_selection", "lib-engine") or name.startswith("bench-"):
            shutil.copy(m["executable"], ".gpu/bin/" + name)
            print("bundled", name, file=sys.stderr)
'
strip --strip-debug .gpu/bin/*   # the copy limit is 64 MiB
cp tools/gpu-check.sh tools/bench-table.py .gpu/
ref="${ENGINE_REFERENCE:-../shared/reference}"
if [ -d "$ref" ]; then cp "$ref"/*.py .gpu/reference/; else echo "no PyTorch reference scripts at $ref: the GPU run will time the engine alone" >&2; fi
du -sh .gpu
