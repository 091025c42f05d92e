#!/usr/bin/env python3
"""Converts a torchvision RetinaNet or ResNet-50 checkpoint (.pth) into the
safetensors file the engine loads (torchvision's tensor names, f32, f16 or
bf16), e.g. for `engine detector train --init`:

    python3 tools/convert_torchvision.py retinanet_resnet50_fpn_coco.pth out.safetensors
    python3 tools/convert_torchvision.py resnet50.pth out.safetensors --prefix backbone.body. --drop fc.

Needs PyTorch and the safetensors package. A state dict, or a checkpoint
holding one under "model" / "state_dict", is accepted. `num_batches_tracked`
buffers are dropped (the engine does not use them)."""
import argparse
import torch
from safetensors.torch import save_file

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("pth")
ap.add_argument("out")
ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
ap.add_argument("--prefix", default="", help="prepended to every name (a bare ResNet-50: backbone.body.)")
ap.add_argument("--drop", action="append", default=[], help="drop names starting with this (repeatable), e.g. fc.")
a = ap.parse_args()

ck = torch.load(a.pth, map_location="cpu", weights_only=True)
sd = ck.get("model", ck.get("state_dict", ck)) if isinstance(ck, dict) else ck
dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
out = {}
for k, v in sd.items():
    if k.endswith("num_batches_tracked") or any(k.startswith(d) for d in a.drop):
        continue
    out[a.prefix + k] = v.detach().to(dtype).contiguous()
save_file(out, a.out, metadata={"source": a.pth})
print(f"{a.out}: {len(out)} tensors ({a.dtype})")
