// Losses of the attention model: BCE with logits (mean) and the triplet
// hinge over rows of (S+, S-, S'+, S'-) (sum). Scalar losses are reduced by a
// single block, in f64, so the result does not depend on scheduling.
#include "common.cuh"

extern "C" __global__ void bce_with_logits_fwd(const float* x, const float* t, float* loss, long long n) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        float v = x[i];
        s += fmaxf(v, 0.0f) - v * t[i] + log1pf(expf(-fabsf(v)));
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) loss[0] = (float)(s / n);
}

extern "C" __global__ void bce_with_logits_bwd(const float* x, const float* t, const float* gy, float* gx, long long n) {
    float k = gy[0] / (float)n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        gx[i] = k * (1.0f / (1.0f + expf(-x[i])) - t[i]);
}

extern "C" __global__ void triplet_hinge_fwd(const float* x, float* loss, int rows, float margin) {
    double s = 0.0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const float* v = x + 4 * r;
        s += fmaxf(margin - v[0] + v[1], 0.0f) + fmaxf(margin - v[2] + v[3], 0.0f);
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) loss[0] = (float)s;
}

extern "C" __global__ void triplet_hinge_bwd(const float* x, const float* gy, float* gx, int rows, float margin) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float g = gy[0];
    for (int h = 0; h < 2; h++) {
        bool active = margin - x[4 * r + 2 * h] + x[4 * r + 2 * h + 1] > 0.0f;
        gx[4 * r + 2 * h] = active ? -g : 0.0f;
        gx[4 * r + 2 * h + 1] = active ? g : 0.0f;
    }
}
