// Normalizations: layer norm over the last axis, L2 normalization and cosine
// similarity along any axis; forward and backward. One warp per line (row);
// the layer-norm parameter gradients are a column reduction, one thread per
// feature.
#include "common.cuh"

extern "C" __global__ void layer_norm_fwd(const float* x, const float* gamma, const float* beta, float* y,
                                          float* mean, float* rstd, int rows, int d, float eps) {
    Line l;
    if (!warp_line(rows, d, 1, &l)) return;
    int lane = threadIdx.x % 32;
    const float* xr = x + l.base;
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) s += xr[j];
    float mu = warp_sum(s) / d;
    float v = 0.0f;
    for (int j = lane; j < d; j += 32) v += (xr[j] - mu) * (xr[j] - mu);
    float rs = rsqrtf(warp_sum(v) / d + eps);
    for (int j = lane; j < d; j += 32) y[l.base + j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    if (lane == 0) { mean[l.index] = mu; rstd[l.index] = rs; }
}

// g_x = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)), ĝ = g_y γ
extern "C" __global__ void layer_norm_bwd(const float* x, const float* gamma, const float* mean, const float* rstd,
                                          const float* gy, float* gx, int rows, int d) {
    Line l;
    if (!warp_line(rows, d, 1, &l)) return;
    int lane = threadIdx.x % 32;
    float mu = mean[l.index], rs = rstd[l.index];
    float m1 = 0.0f, m2 = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float gh = gy[l.base + j] * gamma[j];
        m1 += gh;
        m2 += gh * (x[l.base + j] - mu) * rs;
    }
    m1 = warp_sum(m1) / d;
    m2 = warp_sum(m2) / d;
    for (int j = lane; j < d; j += 32) {
        float xh = (x[l.base + j] - mu) * rs;
        gx[l.base + j] = rs * (gy[l.base + j] * gamma[j] - m1 - xh * m2);
    }
}

// Parameter gradients, a column reduction over the rows: one thread per
// (feature j, chunk of 256 rows) writes partial sums; layer_norm_param_sum
// adds the chunks in order.
extern "C" __global__ void layer_norm_param_bwd(const float* x, const float* mean, const float* rstd, const float* gy,
                                                float* partial_g, float* partial_b, int rows, int d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    int r0 = blockIdx.y * 256, r1 = min(rows, r0 + 256);
    float gg = 0.0f, gb = 0.0f;
    for (int r = r0; r < r1; r++) {
        float g = gy[(long long)r * d + j];
        gg += g * (x[(long long)r * d + j] - mean[r]) * rstd[r];
        gb += g;
    }
    partial_g[(long long)blockIdx.y * d + j] = gg;
    partial_b[(long long)blockIdx.y * d + j] = gb;
}

extern "C" __global__ void layer_norm_param_sum(const float* partial_g, const float* partial_b, float* ggamma, float* gbeta, int chunks, int d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float gg = 0.0f, gb = 0.0f;
    for (int c = 0; c < chunks; c++) { gg += partial_g[(long long)c * d + j]; gb += partial_b[(long long)c * d + j]; }
    ggamma[j] = gg;
    gbeta[j] = gb;
}

extern "C" __global__ void l2_normalize_fwd(const float* x, float* y, float* norm, int outer, int n, int inner, float eps) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    int lane = threadIdx.x % 32;
    float s = 0.0f;
    for (int j = lane; j < n; j += 32) { float v = x[l.base + (long long)j * l.stride]; s += v * v; }
    float nr = sqrtf(warp_sum(s));
    for (int j = lane; j < n; j += 32) { long long i = l.base + (long long)j * l.stride; y[i] = x[i] / (nr + eps); }
    if (lane == 0) norm[l.index] = nr;
}

// g_z = g_q/(n+e) - z (z.g_q)/((n+e)^2 n), second term 0 when n = 0
extern "C" __global__ void l2_normalize_bwd(const float* x, const float* norm, const float* gy, float* gx,
                                            int outer, int n, int inner, float eps) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    int lane = threadIdx.x % 32;
    float dot = 0.0f;
    for (int j = lane; j < n; j += 32) { long long i = l.base + (long long)j * l.stride; dot += x[i] * gy[i]; }
    dot = warp_sum(dot);
    float nr = norm[l.index], ne = nr + eps;
    float c = nr > 0.0f ? dot / (ne * ne * nr) : 0.0f;
    for (int j = lane; j < n; j += 32) { long long i = l.base + (long long)j * l.stride; gx[i] = gy[i] / ne - x[i] * c; }
}

__device__ __forceinline__ void cos_sums(const float* a, const float* b, const Line& l, int n, float* ab, float* aa, float* bb) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
    for (int j = threadIdx.x % 32; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        s0 += a[i] * b[i]; s1 += a[i] * a[i]; s2 += b[i] * b[i];
    }
    *ab = warp_sum(s0); *aa = warp_sum(s1); *bb = warp_sum(s2);
}

extern "C" __global__ void cosine_fwd(const float* a, const float* b, float* y, int outer, int n, int inner, float eps) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    float ab, aa, bb;
    cos_sums(a, b, l, n, &ab, &aa, &bb);
    if (threadIdx.x % 32 == 0) y[l.index] = ab / (fmaxf(sqrtf(aa), eps) * fmaxf(sqrtf(bb), eps));
}

// g_a = g (b/(na nb) - c a/na^2); a norm clamped at eps is a constant.
extern "C" __global__ void cosine_bwd(const float* a, const float* b, const float* gy, float* ga, float* gb,
                                      int outer, int n, int inner, float eps) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    float ab, aa, bb;
    cos_sums(a, b, l, n, &ab, &aa, &bb);
    float na = sqrtf(aa), nb = sqrtf(bb);
    float den = fmaxf(na, eps) * fmaxf(nb, eps);
    float c = ab / den, g = gy[l.index];
    float ka = na > eps ? c / (na * na) : 0.0f;
    float kb = nb > eps ? c / (nb * nb) : 0.0f;
    for (int j = threadIdx.x % 32; j < n; j += 32) {
        long long i = l.base + (long long)j * l.stride;
        ga[i] = g * (b[i] / den - ka * a[i]);
        gb[i] = g * (a[i] / den - kb * b[i]);
    }
}

// Per-channel affine y = x * scale[c] + shift[c] over [n, c, hw]: frozen
// batch norm (scale = gamma / sqrt(var + eps), shift = beta - mean * scale)
// and its input gradient (shift = null).
extern "C" __global__ void channel_affine(const float* x, const float* scale, const float* shift, float* y,
                                          long long total, int c, int hw) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ch = (int)((i / hw) % c);
        y[i] = x[i] * scale[ch] + (shift ? shift[ch] : 0.0f);
    }
}

// Batch norm in training mode, one block per channel: the batch mean and the
// biased variance over [n, hw] (two passes, f64 sums).
extern "C" __global__ void batch_norm_stats(const float* x, float* mean, float* var, int n, int c, int hw) {
    int ch = blockIdx.x;
    long long m = (long long)n * hw;
    double s = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) s += x[((i / hw) * c + ch) * hw + i % hw];
    double mu = block_sum_d(s) / m;
    double v = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) {
        double d = x[((i / hw) * c + ch) * hw + i % hw] - mu;
        v += d * d;
    }
    v = block_sum_d(v) / m;
    if (threadIdx.x == 0) { mean[ch] = (float)mu; var[ch] = (float)v; }
}

extern "C" __global__ void batch_norm_apply(const float* x, const float* mean, const float* var, const float* gamma,
                                            const float* beta, float* y, long long total, int c, int hw, float eps) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ch = (int)((i / hw) % c);
        y[i] = (x[i] - mean[ch]) * rsqrtf(var[ch] + eps) * gamma[ch] + beta[ch];
    }
}

// g_gamma = sum g_y x̂, g_beta = sum g_y, one block per channel.
extern "C" __global__ void batch_norm_bwd_reduce(const float* x, const float* gy, const float* mean, const float* var,
                                                 float* ggamma, float* gbeta, int n, int c, int hw, float eps) {
    int ch = blockIdx.x;
    long long m = (long long)n * hw;
    float mu = mean[ch], istd = rsqrtf(var[ch] + eps);
    double sg = 0.0, sgx = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) {
        long long j = ((i / hw) * c + ch) * hw + i % hw;
        sg += gy[j];
        sgx += (double)gy[j] * (x[j] - mu) * istd;
    }
    sg = block_sum_d(sg);
    sgx = block_sum_d(sgx);
    if (threadIdx.x == 0) { gbeta[ch] = (float)sg; ggamma[ch] = (float)sgx; }
}

// g_x = gamma istd / m (m g_y - g_beta - x̂ g_gamma)
extern "C" __global__ void batch_norm_bwd_apply(const float* x, const float* gy, const float* mean, const float* var,
                                                const float* gamma, const float* ggamma, const float* gbeta, float* gx,
                                                long long total, int n, int c, int hw, float eps) {
    float m = (float)n * hw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ch = (int)((i / hw) % c);
        float istd = rsqrtf(var[ch] + eps), xh = (x[i] - mean[ch]) * istd;
        gx[i] = gamma[ch] * istd / m * (m * gy[i] - gbeta[ch] - xh * ggamma[ch]);
    }
}
