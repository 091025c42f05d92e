#!/usr/bin/env bash
# The one script run on the GPU machine, from the repository root, after
# tools/gpu-bundle.sh: engine info, every GPU test (the ignored ones too),
# the kernel benches, and PyTorch on the same card for comparison; a short
# table last. Logs and JSON go to $OUT (default .gpu/out).
#   ENGINE_BENCH_FILTER   criterion filter for the benches (default: all)
#   ENGINE_BENCHES        which bench binaries, e.g. "ops attention" (default: all)
#   ANCHORS_SECTIONS      sections of pytorch_anchors.py to run (default 0,1,2,3,4)
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d .gpu/bin ] || cd ..   # also works when called as .gpu/gpu-check.sh
OUT="${OUT:-.gpu/out}"
mkdir -p "$OUT"
status=0
step() { echo; echo "=== $*"; }
{
  step "card"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  step "engine info"; .gpu/bin/bin-engine info || status=1
  for t in .gpu/bin/test-gpu .gpu/bin/test-box_ops .gpu/bin/test-roi_selection .gpu/bin/lib-engine; do
    step "$t --include-ignored"; "$t" --include-ignored --test-threads=1 || status=1
  done
  step "benches"
  export CRITERION_HOME="$PWD/.gpu/criterion"
  for bench in .gpu/bin/bench-*; do
    name=${bench#.gpu/bin/bench-}
    if [ -n "${ENGINE_BENCHES:-}" ] && ! [[ " $ENGINE_BENCHES " == *" $name "* ]]; then continue; fi
    "$bench" --bench ${ENGINE_BENCH_FILTER:-} || status=1
  done
  python3 .gpu/bench-table.py "$CRITERION_HOME" > "$OUT/bench.md" || true
  if [ -f .gpu/reference/pytorch_anchors.py ] && python3 -c 'import torch' 2>/dev/null; then
    step "PyTorch on the same card"
    ANCHORS_SECTIONS="${ANCHORS_SECTIONS:-0,1,2,3,4}" OUT="$OUT" python3 .gpu/reference/pytorch_anchors.py || status=1
  fi
  if [ -n "${ENGINE_DEMO:-}" ]; then
    # e.g. ENGINE_DEMO="--count 800 --detector-steps 800": the whole method on the GPU, table and demo.json into $OUT/demo
    step "engine demo $ENGINE_DEMO"
    # shellcheck disable=SC2086
    .gpu/bin/bin-engine --device cuda demo --out "$OUT/demo" $ENGINE_DEMO || status=1
    rm -rf "$OUT/demo/data" "$OUT/demo/attention/rois"   # images and ROI shards stay on the machine
  fi
  step "summary (status $status)"
  cat "$OUT/bench.md" 2>/dev/null
  [ -f "$OUT/anchors.json" ] && cat "$OUT/anchors.json"
  exit $status   # leaves the piped block with its status
} 2>&1 | tee "$OUT/gpu-check.log"
exit "${PIPESTATUS[0]}"
