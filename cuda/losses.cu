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

// Sigmoid focal loss (RetinaNet), summed with per-element weights w (the
// detector folds the valid-anchor mask and 1/num_foreground into w):
// FL = alpha_t (1 - p_t)^gamma BCE(x, t).
__device__ __forceinline__ float focal_term(float x, float t, float alpha, float gamma, float* grad) {
    float p = 1.0f / (1.0f + expf(-x));
    float ce = fmaxf(x, 0.0f) - x * t + log1pf(expf(-fabsf(x)));
    float pt = p * t + (1.0f - p) * (1.0f - t);
    float at = alpha >= 0.0f ? alpha * t + (1.0f - alpha) * (1.0f - t) : 1.0f;
    float m = powf(1.0f - pt, gamma);
    if (grad) {
        // d/dx [(1-pt)^g ce] = (1-pt)^g (p - t) + ce g (1-pt)^(g-1) (-(dpt/dx)), dpt/dx = (2t-1) p (1-p)
        float dpt = (2.0f * t - 1.0f) * p * (1.0f - p);
        float dm = gamma > 0.0f && 1.0f - pt > 0.0f ? -gamma * powf(1.0f - pt, gamma - 1.0f) * dpt : 0.0f;
        *grad = at * (m * (p - t) + ce * dm);
    }
    return at * m * ce;
}

extern "C" __global__ void focal_loss_fwd(const float* x, const float* t, const float* w, float* loss, long long n, float alpha, float gamma) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        float wi = w ? w[i] : 1.0f;
        if (wi != 0.0f) s += (double)wi * focal_term(x[i], t[i], alpha, gamma, nullptr);
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) loss[0] = (float)s;
}

extern "C" __global__ void focal_loss_bwd(const float* x, const float* t, const float* w, const float* gy, float* gx,
                                          long long n, float alpha, float gamma) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float wi = w ? w[i] : 1.0f, g = 0.0f;
        if (wi != 0.0f) focal_term(x[i], t[i], alpha, gamma, &g);
        gx[i] = gy[0] * wi * g;
    }
}

// L1 (beta = 0) or smooth L1 (beta > 0) loss, summed with weights.
__device__ __forceinline__ float box_term(float d, float beta, float* grad) {
    float a = fabsf(d);
    if (beta > 0.0f && a < beta) { *grad = d / beta; return 0.5f * d * d / beta; }
    *grad = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
    return beta > 0.0f ? a - 0.5f * beta : a;
}

extern "C" __global__ void box_loss_fwd(const float* x, const float* t, const float* w, float* loss, long long n, float beta) {
    double s = 0.0;
    float g;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += (double)(w ? w[i] : 1.0f) * box_term(x[i] - t[i], beta, &g);
    s = block_sum_d(s);
    if (threadIdx.x == 0) loss[0] = (float)s;
}

extern "C" __global__ void box_loss_bwd(const float* x, const float* t, const float* w, const float* gy, float* gx, long long n, float beta) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g;
        box_term(x[i] - t[i], beta, &g);
        gx[i] = gy[0] * (w ? w[i] : 1.0f) * g;
    }
}
