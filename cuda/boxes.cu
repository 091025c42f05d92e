// Box geometry of the detector (forward only), as src/detect/*.rs: boxes are
// [x1, y1, x2, y2] rows of 4 floats. IoUs use round-to-nearest intrinsics so
// that nvcc does not contract them into FMAs: the CPU computes each product
// and sum rounded, and NMS and matching compare IoUs exactly.
#include "common.cuh"

__device__ __forceinline__ float box_area(const float* b) {
    return __fmul_rn(__fsub_rn(b[2], b[0]), __fsub_rn(b[3], b[1]));
}

__device__ __forceinline__ float box_iou1(const float* a, const float* b) {
    float w = fmaxf(__fsub_rn(fminf(a[2], b[2]), fmaxf(a[0], b[0])), 0.0f);
    float h = fmaxf(__fsub_rn(fminf(a[3], b[3]), fmaxf(a[1], b[1])), 0.0f);
    float inter = __fmul_rn(w, h);
    return __fdiv_rn(inter, __fsub_rn(__fadd_rn(box_area(a), box_area(b)), inter));
}

// iou[i, j] = IoU(a[i], b[j]).
extern "C" __global__ void box_iou(const float* a, const float* b, float* iou, int na, int nb) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < (long long)na * nb; t += (long long)gridDim.x * blockDim.x) {
        int i = (int)(t / nb), j = (int)(t % nb);
        iou[t] = box_iou1(a + 4 * i, b + 4 * j);
    }
}

// Mirrors detect::boxes::BoxCoder: weights (wx, wy, ww, wh) and the dw/dh clamp.
struct BoxCoder {
    float wx, wy, ww, wh, clip;
};

// Width, height and centre of a box (the coder's view of it).
struct Centred {
    float w, h, x, y;
};

__device__ __forceinline__ Centred centred(const float* b) {
    float w = b[2] - b[0], h = b[3] - b[1];
    return {w, h, __fadd_rn(b[0], __fmul_rn(0.5f, w)), __fadd_rn(b[1], __fmul_rn(0.5f, h))};
}

// Regression targets of gt[i] relative to anchors[i].
extern "C" __global__ void box_encode(BoxCoder c, const float* gt, const float* anchors, float* d, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Centred a = centred(anchors + 4 * i), g = centred(gt + 4 * i);
    d[4 * i] = c.wx * (g.x - a.x) / a.w;
    d[4 * i + 1] = c.wy * (g.y - a.y) / a.h;
    d[4 * i + 2] = c.ww * logf(g.w / a.w);
    d[4 * i + 3] = c.wh * logf(g.h / a.h);
}

// The boxes that regressions d[i] make of anchors[i]; clipped to [0, w] x
// [0, h] when clip_w > 0.
extern "C" __global__ void box_decode(BoxCoder c, const float* d, const float* anchors, float* out, int n, float clip_h, float clip_w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Centred a = centred(anchors + 4 * i);
    const float* r = d + 4 * i;
    float dx = r[0] / c.wx, dy = r[1] / c.wy;
    float dw = fminf(r[2] / c.ww, c.clip), dh = fminf(r[3] / c.wh, c.clip);
    float cx = __fadd_rn(__fmul_rn(dx, a.w), a.x), cy = __fadd_rn(__fmul_rn(dy, a.h), a.y);
    float w = __fmul_rn(expf(dw), a.w), h = __fmul_rn(expf(dh), a.h);
    float b[4] = {cx - __fmul_rn(0.5f, w), cy - __fmul_rn(0.5f, h), cx + __fmul_rn(0.5f, w), cy + __fmul_rn(0.5f, h)};
    if (clip_w > 0.0f) {
        b[0] = fminf(fmaxf(b[0], 0.0f), clip_w);
        b[2] = fminf(fmaxf(b[2], 0.0f), clip_w);
        b[1] = fminf(fmaxf(b[1], 0.0f), clip_h);
        b[3] = fminf(fmaxf(b[3], 0.0f), clip_h);
    }
    for (int k = 0; k < 4; k++) out[4 * i + k] = b[k];
}

// The anchors of one pyramid level, written from row `offset` of out in
// (y, x, cell) order: cell anchor c shifted by (x * sx, y * sy).
extern "C" __global__ void anchors_level(const float* cells, int n_cells, int gh, int gw, float sy, float sx, float* out, long long offset) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= gh * gw * n_cells) return;
    int c = t % n_cells, x = (t / n_cells) % gw, y = t / (n_cells * gw);
    float cx = __fmul_rn((float)x, sx), cy = __fmul_rn((float)y, sy);
    float* o = out + 4 * (offset + t);
    o[0] = cells[4 * c] + cx;
    o[1] = cells[4 * c + 1] + cy;
    o[2] = cells[4 * c + 2] + cx;
    o[3] = cells[4 * c + 3] + cy;
}

// NMS, first pass (torchvision's CUDA scheme): boxes already in score order;
// block (bx, by) of 64 threads marks, for each box i of row block by, the
// boxes j > i of column block bx that it suppresses (IoU > threshold), as
// bits of mask[i, bx]. The host then walks the boxes in order.
#define NMS_BLOCK 64
extern "C" __global__ void nms_mask(const float* boxes, int n, float threshold, unsigned long long* mask) {
    __shared__ float col[NMS_BLOCK * 4];
    int rb = blockIdx.y, cb = blockIdx.x;
    int rows = min(n - rb * NMS_BLOCK, NMS_BLOCK), cols = min(n - cb * NMS_BLOCK, NMS_BLOCK);
    if (rows <= 0 || cols <= 0) return;
    if (threadIdx.x < cols)
        for (int k = 0; k < 4; k++) col[4 * threadIdx.x + k] = boxes[4 * (cb * NMS_BLOCK + threadIdx.x) + k];
    __syncthreads();
    if (threadIdx.x >= rows) return;
    int i = rb * NMS_BLOCK + threadIdx.x;
    unsigned long long bits = 0;
    for (int j = (rb == cb ? threadIdx.x + 1 : 0); j < cols; j++)
        if (box_iou1(boxes + 4 * i, col + 4 * j) > threshold) bits |= 1ULL << j;
    mask[(long long)i * gridDim.x + cb] = bits;
}

// Matcher, first pass: for each anchor its best IoU and the first gt box
// reaching it; for each gt box its best IoU over the anchors (IoUs are >= 0,
// -0 turned into +0, so their bit patterns order as ints; NaN IoUs of empty
// boxes are skipped as f32::max skips them).
extern "C" __global__ void match_best(const float* gt, int ng, const float* anchors, int na, float* best_iou, float* best_gt, int* best_per_gt) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= na) return;
    float best = -INFINITY;
    int arg = 0;
    for (int g = 0; g < ng; g++) {
        float v = box_iou1(gt + 4 * g, anchors + 4 * a);
        if (v > best) { best = v; arg = g; }
        if (v == v) atomicMax(best_per_gt + g, __float_as_int(__fadd_rn(v, 0.0f)));  // -0 as +0
    }
    best_iou[a] = best;
    best_gt[a] = (float)arg;
}

// Matcher, second pass: -1 (background) below `low`, -2 (ignored) below
// `high`, else the best gt; with low-quality matches, an anchor reaching some
// gt box's best IoU gets its own best gt back.
extern "C" __global__ void match_assign(const float* gt, int ng, const float* anchors, int na, const float* best_iou, const float* best_gt,
                                        const int* best_per_gt, float low, float high, int allow_low_quality, float* matches) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= na) return;
    float v = best_iou[a];
    float m = v < low ? -1.0f : (v < high ? -2.0f : best_gt[a]);
    if (allow_low_quality)
        for (int g = 0; g < ng; g++)
            if (box_iou1(gt + 4 * g, anchors + 4 * a) == __int_as_float(best_per_gt[g])) { m = best_gt[a]; break; }
    matches[a] = m;
}
