#!/usr/bin/env python3
"""The engine and PyTorch on this CPU, in alternating rounds of the same session.

Each round runs the engine's criterion benches (`cargo bench`: GEMM 1024^3, the
five ResNet-50 convolution shapes at batch 1 and 1/4 resolution, RetinaNet
R50-FPN train step and inference b4 128^2, the attention model's training step
b32 N=300), then tools/cpu_anchors.py (the same shapes in PyTorch), with the
same number of threads. Prints the range of medians over the rounds of each
side, the ratio of their middles, and writes side-by-side.json.

Optional, never a test: needs a Python with torch and torchvision
(`PYTHON=/path/to/venv/bin/python`). Usage:
    tools/cpu-side-by-side.py [--rounds 3] [--threads 2] [--out DIR]
"""
import argparse, json, os, re, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# engine criterion id -> the PyTorch line of cpu_anchors.py
PAIRS = [
    ("gemm_f32/cpu/1024^3", "gemm_f32 1024^3"),
    *[(f"conv {s}/cpu/{d}/b1 @{n}", f"conv {s} {d}")
      for s, n in [("stem 7x7 s2 3-64 @512", 128), ("3x3 64-64 @128", 32), ("1x1 256-64 @128", 32),
                   ("3x3 256-256 @32", 8), ("1x1 1024-2048 s2 @32", 8)]
      for d in ("forward", "data_grad", "weight_grad")],
    ("retinanet r50-fpn/cpu/train step/b4 128^2", "retinanet train step b4 128^2"),
    ("retinanet r50-fpn/cpu/inference/b4 128^2", "retinanet inference b4 128^2"),
    ("attention model train step/cpu/b32 N=300", "attention train step b32 N=300"),
]
BENCHES = [("ops", "gemm_f32/cpu/1024"), ("detector", "cpu/"), ("attention", "cpu/b32 N=300")]
UNIT = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def engine_round(env):
    """Median ms of every engine bench of PAIRS, from criterion's output."""
    out = {}
    for bench, filt in BENCHES:
        text = subprocess.run(["cargo", "bench", "-q", "--bench", bench, "--", filt, "--noplot"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout
        # criterion prints the id, then "time: [lo med hi]" on the same or the next line
        for m in re.finditer(r"^(\S[^\n]*?)\s*\n?\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text, re.M):
            out[m.group(1).strip()] = float(m.group(2)) * UNIT[m.group(3)]
    return out


def torch_round(python, env):
    text = subprocess.run([python, os.path.join(HERE, "cpu_anchors.py"), "gemm,conv,retina,head"], env=env,
                          capture_output=True, text=True, check=True).stdout
    return {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(.+?)\s+([\d.]+) ms", text, re.M)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "side-by-side"))
    a = ap.parse_args()
    python = os.environ.get("PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True).returncode != 0:
        sys.exit(f"{python} has no torch/torchvision: set PYTHON to a Python that has them")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), THREADS=str(a.threads))
    subprocess.run(["cargo", "bench", "--no-run", "-q"], cwd=ROOT, check=True)
    eng, tor = [], []
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}: engine", file=sys.stderr, flush=True)
        eng.append(engine_round(env))
        print(f"round {r + 1}/{a.rounds}: PyTorch", file=sys.stderr, flush=True)
        tor.append(torch_round(python, env))
    rows = []
    print(f"| work ({a.threads} threads, {a.rounds} alternating rounds) | engine ms | PyTorch ms | engine / PyTorch |")
    print("|---|---|---|---|")
    for e_id, t_id in PAIRS:
        e = [r[e_id] for r in eng if e_id in r]
        t = [r[t_id] for r in tor if t_id in r]
        if not e or not t:
            print(f"| {t_id} | {'missing' if not e else ''} | {'missing' if not t else ''} | |")
            continue
        ratio = statistics.median(e) / statistics.median(t)
        rows.append({"work": t_id, "engine_ms": e, "pytorch_ms": t, "ratio_of_medians": ratio})
        rng = lambda v: f"{min(v):.3f}-{max(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
        print(f"| {t_id} | {rng(e)} | {rng(t)} | {ratio:.2f} |")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "side-by-side.json"), "w") as f:
        json.dump({"threads": a.threads, "rounds": a.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
