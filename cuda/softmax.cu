// Softmax of scale * x along one axis, optionally masked (mask 0 = -inf, so
// probability 0; a fully masked line is all zeros), and its backward
// g_x = scale * y * (g_y - sum(y g_y)). One warp per line.
#include "common.cuh"
#include <cfloat>

extern "C" __global__ void softmax_fwd(const float* x, const float* mask, float* y, int outer, int n, int inner, float scale) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    int lane = threadIdx.x % 32;
    float mx = -FLT_MAX;
    bool any = false;
    for (int j = lane; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        if (!mask || mask[i] != 0.0f) { mx = fmaxf(mx, scale * x[i]); any = true; }
    }
    mx = warp_max(mx);
    any = __any_sync(0xffffffffu, any);
    float s = 0.0f;
    for (int j = lane; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        float e = (any && (!mask || mask[i] != 0.0f)) ? expf(scale * x[i] - mx) : 0.0f;
        y[i] = e;
        s += e;
    }
    s = warp_sum(s);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int j = lane; j < n; j += 32) y[l.base + (long long)j * l.stride] *= inv;
}

extern "C" __global__ void softmax_bwd(const float* y, const float* gy, float* gx, int outer, int n, int inner, float scale) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    int lane = threadIdx.x % 32;
    float dot = 0.0f;
    for (int j = lane; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        dot += y[i] * gy[i];
    }
    dot = warp_sum(dot);
    for (int j = lane; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        gx[i] = scale * y[i] * (gy[i] - dot);
    }
}
