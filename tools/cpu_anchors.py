"""(Copied from the project's shared/reference; run by tools/cpu-side-by-side.py.)
PyTorch on this CPU, shaped like the engine's CPU benches (2 threads): GEMM 1024^3, the five
ResNet-50 conv shapes at batch 1 and 1/4 resolution (fwd, data grad, weight grad), RetinaNet R50-FPN
train step and inference b4 128^2 (frozen BN, trainable layers 5), attention head train step b32
N=100/300. Prints 'name ms'. Usage: python cpu_anchors.py [sections, e.g. gemm,conv,retina,head]"""
import os, sys, time, statistics
import torch, torch.nn.functional as F, torchvision
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
want = set((sys.argv[1] if len(sys.argv) > 1 else "gemm,conv,retina,head").split(","))
def bench(f, warm=2, reps=7, min_s=2.0):
    for _ in range(warm): f()
    ts = []; t_end = time.perf_counter() + min_s
    while len(ts) < reps or time.perf_counter() < t_end:
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
        if len(ts) >= 50: break
    return statistics.median(ts)
def out(name, ms, extra=""): print(f"{name:45s} {ms:10.3f} ms {extra}", flush=True)
if "gemm" in want:
    for n in (256, 1024):
        a = torch.randn(n, n); b = torch.randn(n, n)
        ms = bench(lambda: a @ b); out(f"gemm_f32 {n}^3", ms, f"{2*n**3/ms/1e6:.1f} GFLOP/s")
if "conv" in want:
    shapes = [("stem 7x7 s2 3-64 @512", 3, 512, 64, 7, 2, 3), ("3x3 64-64 @128", 64, 128, 64, 3, 1, 1),
              ("1x1 256-64 @128", 256, 128, 64, 1, 1, 0), ("3x3 256-256 @32", 256, 32, 256, 3, 1, 1),
              ("1x1 1024-2048 s2 @32", 1024, 32, 2048, 1, 2, 0)]
    for name, ci, size, co, k, s, p in shapes:
        size //= 4
        x = torch.randn(1, ci, size, size); w = torch.randn(co, ci, k, k)
        y = F.conv2d(x, w, stride=s, padding=p); gy = torch.randn_like(y)
        out(f"conv {name} forward", bench(lambda: F.conv2d(x, w, stride=s, padding=p)))
        out(f"conv {name} data_grad", bench(lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, stride=s, padding=p)))
        out(f"conv {name} weight_grad", bench(lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, stride=s, padding=p)))
if "retina" in want:
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d
    n, size = int(os.environ.get("RB", "4")), int(os.environ.get("RS", "128"))
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    bb = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(2048, 256))
    m = RetinaNet(bb, num_classes=2, min_size=size, max_size=size)
    imgs = [torch.rand(3, size, size) for _ in range(n)]
    s = size / 512
    tg = [{"boxes": torch.tensor([[100. * s, 120. * s, 260. * s, 330. * s]]), "labels": torch.tensor([1])} for _ in range(n)]
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    m.train()
    def step():
        opt.zero_grad(set_to_none=True); l = m(imgs, tg); sum(l.values()).backward(); opt.step()
    out(f"retinanet train step b{n} {size}^2", bench(step, reps=5))
    m.eval()
    def inf():
        with torch.no_grad(): m(imgs)
    out(f"retinanet inference b{n} {size}^2", bench(inf, reps=5))
if "head" in want:
    here = os.path.dirname(os.path.abspath(__file__))
    # paper_head.py: beside this script, in the project's shared reference, or where PAPER_HEAD_DIR says
    sys.path[:0] = [here, os.path.join(here, "..", "..", "shared", "reference"), os.environ.get("PAPER_HEAD_DIR", here)]
    from paper_head import PaperHead
    for N in (100, 300):
        B, M = 32, 22
        h = PaperHead(); opt = torch.optim.Adam(h.parameters(), 2e-4)
        r = torch.randn(B, N, 256); g = torch.rand(B, N, 4); sc = torch.rand(B, N, 1)
        rn = torch.randn(B, N, 256); gn = torch.rand(B, N, 4); scn = torch.rand(B, N, 1)
        mask = torch.rand(B, M) > 0.7; mask[:, 0] = True
        mm = torch.randn(B, M, 200) * mask.unsqueeze(-1); mn = torch.randn(B, M, 200) * mask.unsqueeze(-1)
        y = (torch.rand(B, 22) > 0.8).float()
        def f():
            opt.zero_grad(set_to_none=True); l = h(r, g, sc, rn, gn, scn, mm, mn, mask, y); l.backward(); opt.step()
        out(f"attention train step b32 N={N}", bench(f, reps=10))
