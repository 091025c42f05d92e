// The fused cross-attention of the attention model (literal variant; SPEC
// 4.4-4.6; the readable reference is src/backend/cpu_xattn.rs). Per sample:
//   s_ij = cos(phi_i, m_j), z = leaky(s) * mask_j,
//   a_ij = softmax_j(la z_ij / (|z_:j| + e)) over valid j,
//   b_ij = softmax_i(lb z_ij / (|z_i:| + e)) * mask_j,
//   A_j = sum_i alpha_i a_ij phi_i, B_i = sum_j b_ij m_j,
//   S_roi = mean_i cos(B_i, phi_i), S_text = mean_valid_j cos(A_j, m_j).
// Every kernel spreads a batch over many blocks (a warp per ROI, or a block
// per attribute slot), so that a batch of 32 fills the GPU:
//   both passes: xattn_scores (warp per ROI), xattn_softmax (block per sample);
//   forward:     xattn_roi (warp per ROI: cos(B_i, phi_i)), xattn_text (block
//                per slot: cos(A_j, m_j)), xattn_sum (warp per sample);
//   backward:    xattn_grad_text (block per slot: g A_j), xattn_grad_rows (warp
//                per ROI: g phi through B_i and A, g alpha, g of both softmax
//                outputs), xattn_grad_cols (warp per slot: column sums),
//                xattn_grad_scores (warp per ROI: through the normalisations to
//                the cosines and phi).
// Attribute slots sit on the lanes of a warp (m <= 32); features are spread
// over the lanes (d <= 256, 8 per lane). All reductions run in a fixed
// order, so results do not depend on scheduling.
#include "common.cuh"
#include <cfloat>

#define E 1e-8f
#define PER_LANE 8

struct Scratch {
    float* s;    // [b, n, m] cosine
    float* z;    // [b, n, m] leaky(s) * mask
    float* a;    // [b, n, m] softmax over j
    float* pb;   // [b, n, m] softmax over i (before the mask)
    float* pn;   // [b, n] |phi_i|
    float* rb;   // [b, n] |z_i:|
    float* ca;   // [b, m] |z_:j|
    float* rroi;   // [b, n] cos(B_i, phi_i)
    float* rtext;  // [b, m] mask_j cos(A_j, m_j)
    float* nm;     // [b, m] |m_j|
    float* colb;   // [b, m] sum_i pb_ij g_pb_ij
    float* colz;   // [b, m] sum_i z_ij g_za_ij
    float* ga;     // [b, m, d] gradient of A_j
    float* gpb;    // [b, n, m] gradient of pb (the softmax over i)
    float* gza;    // [b, n, m] gradient of the softmax over j's input
};

#define XA_WARPS 8  // warps of the block-per-slot kernels (256 threads)

__device__ __forceinline__ float leaky(float x, float slope) { return x > 0.0f ? x : x * slope; }

// cos(u, v) with norms clamped at E, from the dot and squared norms.
__device__ __forceinline__ float cosine(float uv, float uu, float vv) {
    return uv / (fmaxf(sqrtf(uu), E) * fmaxf(sqrtf(vv), E));
}

// One warp per ROI: |phi_i|, s_ij, z_ij, |z_i:|.
extern "C" __global__ void xattn_scores(XAttn p, const float* phi, const float* m, const float* mask, Scratch sc) {
    const int b = blockIdx.x, lane = threadIdx.x % 32;
    const int i = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (i >= p.n) return;
    const float* ph = phi + ((long long)b * p.n + i) * p.d;
    float x[PER_LANE], xx = 0.0f;
    for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; x[q] = k < p.d ? ph[k] : 0.0f; xx += x[q] * x[q]; }
    float pn = sqrtf(warp_sum(xx));
    float zl = 0.0f, sl = 0.0f;  // lane j keeps z_ij and s_ij
    for (int j = 0; j < p.m; j++) {
        const float* mj = m + ((long long)b * p.m + j) * p.d;
        float dot = 0.0f, mm = 0.0f;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; float v = k < p.d ? mj[k] : 0.0f; dot += x[q] * v; mm += v * v; }
        dot = warp_sum(dot);
        mm = warp_sum(mm);
        float s = dot / ((pn + E) * (sqrtf(mm) + E));
        if (lane == j) { sl = s; zl = leaky(s, p.slope) * mask[b * p.m + j]; }
    }
    long long row = ((long long)b * p.n + i) * p.m;
    if (lane < p.m) { sc.s[row + lane] = sl; sc.z[row + lane] = zl; }
    float rb = sqrtf(warp_sum(lane < p.m ? zl * zl : 0.0f));
    if (lane == 0) { sc.pn[b * p.n + i] = pn; sc.rb[b * p.n + i] = rb; }
}

// One block per sample: column norms, the softmax over ROIs (b), then the
// softmax over attributes (a) with the column norms.
extern "C" __global__ void __launch_bounds__(512) xattn_softmax(XAttn p, const float* mask, Scratch sc) {
    const int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const float* z = sc.z + (long long)b * p.n * p.m;
    const float* rb = sc.rb + (long long)b * p.n;
    __shared__ float ca[32];
    for (int j = warp; j < p.m; j += warps) {
        float zz = 0.0f, mx = -FLT_MAX;
        for (int i = lane; i < p.n; i += 32) {
            float v = z[i * p.m + j];
            zz += v * v;
            mx = fmaxf(mx, p.lambda_b * v / (rb[i] + E));
        }
        zz = warp_sum(zz);
        mx = warp_max(mx);
        float tot = 0.0f;
        for (int i = lane; i < p.n; i += 32) tot += expf(p.lambda_b * z[i * p.m + j] / (rb[i] + E) - mx);
        tot = warp_sum(tot);
        for (int i = lane; i < p.n; i += 32) sc.pb[((long long)b * p.n + i) * p.m + j] = expf(p.lambda_b * z[i * p.m + j] / (rb[i] + E) - mx) / tot;
        if (lane == 0) { ca[j] = sqrtf(zz); sc.ca[b * p.m + j] = sqrtf(zz); }
    }
    __syncthreads();
    const bool valid = lane < p.m && mask[b * p.m + (lane < p.m ? lane : 0)] != 0.0f;
    for (int i = warp; i < p.n; i += warps) {
        float u = valid ? p.lambda_a * z[i * p.m + lane] / (ca[lane] + E) : -FLT_MAX;
        float mx = warp_max(u);
        float e = valid ? expf(u - mx) : 0.0f;
        float tot = warp_sum(e);
        if (lane < p.m) sc.a[((long long)b * p.n + i) * p.m + lane] = tot > 0.0f ? e / tot : 0.0f;
    }
}

// B_i of sample b into `bi`, from b = pb * mask and m.
__device__ __forceinline__ void big_b(const XAttn& p, int b, int i, const float* m, const float* mask, const Scratch& sc, float* bi) {
    const int lane = threadIdx.x % 32;
    for (int q = 0; q < PER_LANE; q++) bi[q] = 0.0f;
    for (int j = 0; j < p.m; j++) {
        float w = sc.pb[((long long)b * p.n + i) * p.m + j] * mask[b * p.m + j];
        const float* mj = m + ((long long)b * p.m + j) * p.d;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) bi[q] += w * mj[k]; }
    }
}

// Dot and squared norms of two lane-spread vectors, reduced over the warp.
__device__ __forceinline__ void dots(const float* u, const float* v, int d, float* uv, float* uu, float* vv) {
    const int lane = threadIdx.x % 32;
    float a = 0.0f, b = 0.0f, c = 0.0f;
    for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < d) { a += u[q] * v[q]; b += u[q] * u[q]; c += v[q] * v[q]; } }
    *uv = warp_sum(a); *uu = warp_sum(b); *vv = warp_sum(c);
}

__device__ __forceinline__ void load_row(const float* src, int d, float* dst) {
    const int lane = threadIdx.x % 32;
    for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; dst[q] = k < d ? src[k] : 0.0f; }
}

__device__ __forceinline__ float valid_count(const XAttn& p, int b, const float* mask) {
    float c = 0.0f;
    for (int j = 0; j < p.m; j++) c += mask[b * p.m + j];
    return fmaxf(c, 1.0f);
}

// Adds g * d cos(u, v) / du to `gu` (lane-spread), norms clamped at E.
__device__ __forceinline__ void cos_grad(const float* u, const float* v, int d, float g, float* gu) {
    float uv, uu, vv;
    dots(u, v, d, &uv, &uu, &vv);
    float nu = sqrtf(uu), den = fmaxf(nu, E) * fmaxf(sqrtf(vv), E);
    float c = uv / den, k = nu > E ? c / (nu * nu) : 0.0f;
    for (int q = 0; q < PER_LANE; q++) gu[q] += g * (v[q] / den - k * u[q]);
}

// A_j of sample b: the block's warps sum interleaved ROIs, then add their
// partial sums in warp order; every warp gets A_j in `aj` (lane-spread).
__device__ __forceinline__ void block_big_a(const XAttn& p, int b, int j, const float* phi, const float* alpha, const Scratch& sc, float* aj) {
    __shared__ float part[XA_WARPS][32 * PER_LANE];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float acc[PER_LANE];
    for (int q = 0; q < PER_LANE; q++) acc[q] = 0.0f;
    for (int i = warp; i < p.n; i += XA_WARPS) {
        float w = alpha[b * p.n + i] * sc.a[((long long)b * p.n + i) * p.m + j];
        const float* ph = phi + ((long long)b * p.n + i) * p.d;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) acc[q] += w * ph[k]; }
    }
    for (int q = 0; q < PER_LANE; q++) part[warp][lane + 32 * q] = acc[q];
    __syncthreads();
    for (int q = 0; q < PER_LANE; q++) {
        float t = 0.0f;
        for (int w = 0; w < XA_WARPS; w++) t += part[w][lane + 32 * q];
        aj[q] = t;
    }
}

// Forward, warp per ROI: r_roi_i = cos(B_i, phi_i).
extern "C" __global__ void xattn_roi(XAttn p, const float* phi, const float* m, const float* mask, Scratch sc) {
    const int b = blockIdx.x, lane = threadIdx.x % 32;
    const int i = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (i >= p.n) return;
    float u[PER_LANE], v[PER_LANE], uv, uu, vv;
    big_b(p, b, i, m, mask, sc, u);
    load_row(phi + ((long long)b * p.n + i) * p.d, p.d, v);
    dots(u, v, p.d, &uv, &uu, &vv);
    if (lane == 0) sc.rroi[b * p.n + i] = cosine(uv, uu, vv);
}

// Forward, block (XA_WARPS warps) per slot j: r_text_j = mask_j cos(A_j, m_j).
extern "C" __global__ void __launch_bounds__(32 * XA_WARPS) xattn_text(XAttn p, const float* phi, const float* alpha, const float* m, const float* mask, Scratch sc) {
    const int b = blockIdx.x, j = blockIdx.y;
    float u[PER_LANE], v[PER_LANE], uv, uu, vv;
    block_big_a(p, b, j, phi, alpha, sc, u);
    if (threadIdx.x >= 32) return;
    load_row(m + ((long long)b * p.m + j) * p.d, p.d, v);
    dots(u, v, p.d, &uv, &uu, &vv);
    if (threadIdx.x == 0) sc.rtext[b * p.m + j] = mask[b * p.m + j] * cosine(uv, uu, vv);
}

// Forward, warp per sample: S_roi = mean_i r_roi, S_text = mean over valid j of r_text.
extern "C" __global__ void xattn_sum(XAttn p, const float* mask, Scratch sc, float* out) {
    const int b = blockIdx.x, lane = threadIdx.x;
    float r = 0.0f, t = lane < p.m ? sc.rtext[b * p.m + lane] : 0.0f;
    for (int i = lane; i < p.n; i += 32) r += sc.rroi[b * p.n + i];
    r = warp_sum(r);
    t = warp_sum(t);
    if (lane == 0) { out[b] = r / p.n; out[p.b + b] = t / valid_count(p, b, mask); }
}

// Backward, block per slot j: g_A_j from r_text_j = cos(A_j, m_j) (upstream
// `g` [2b]: g_S_roi, g_S_text), and |m_j|.
extern "C" __global__ void __launch_bounds__(32 * XA_WARPS) xattn_grad_text(XAttn p, const float* phi, const float* alpha, const float* m, const float* mask,
                                                                            Scratch sc, const float* g) {
    const int b = blockIdx.x, j = blockIdx.y, lane = threadIdx.x % 32;
    float u[PER_LANE], v[PER_LANE], w[PER_LANE];
    block_big_a(p, b, j, phi, alpha, sc, u);
    if (threadIdx.x >= 32) return;
    const float g_text = g[p.b + b] / valid_count(p, b, mask);
    load_row(m + ((long long)b * p.m + j) * p.d, p.d, v);
    for (int q = 0; q < PER_LANE; q++) w[q] = 0.0f;
    cos_grad(u, v, p.d, g_text * mask[b * p.m + j], w);
    for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) sc.ga[((long long)b * p.m + j) * p.d + k] = w[q]; }
    float mm = 0.0f;
    for (int q = 0; q < PER_LANE; q++) mm += v[q] * v[q];
    mm = warp_sum(mm);
    if (lane == 0) sc.nm[b * p.m + j] = sqrtf(mm);
}

// Backward, warp per ROI i: r_roi_i = cos(B_i, phi_i) -> g_B_i and phi_i
// directly, g_pb_ij = (m_j . g_B_i) mask_j; A_j = sum_i alpha_i a_ij phi_i
// -> g_alpha_i, phi_i, and g_a_ij through the softmax over j (g_za).
extern "C" __global__ void xattn_grad_rows(XAttn p, const float* phi, const float* alpha, const float* m, const float* mask, Scratch sc,
                                           const float* g, float* gphi, float* galpha) {
    const int b = blockIdx.x, lane = threadIdx.x % 32;
    const int i = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (i >= p.n) return;
    const float g_roi = g[b] / p.n;
    const long long row = ((long long)b * p.n + i) * p.m;
    float u[PER_LANE], v[PER_LANE], w[PER_LANE], gp[PER_LANE];
    big_b(p, b, i, m, mask, sc, u);
    load_row(phi + ((long long)b * p.n + i) * p.d, p.d, v);
    for (int q = 0; q < PER_LANE; q++) w[q] = gp[q] = 0.0f;
    cos_grad(u, v, p.d, g_roi, w);   // g_B_i
    cos_grad(v, u, p.d, g_roi, gp);  // direct g_phi_i
    float mine = 0.0f;
    for (int j = 0; j < p.m; j++) {
        const float* mj = m + ((long long)b * p.m + j) * p.d;
        float s = 0.0f;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) s += mj[k] * w[q]; }
        s = warp_sum(s) * mask[b * p.m + j];
        if (lane == j) mine = s;
    }
    if (lane < p.m) sc.gpb[row + lane] = mine;
    float al = alpha[b * p.n + i], ga = 0.0f, g_a = 0.0f, a_l = lane < p.m ? sc.a[row + lane] : 0.0f;
    for (int q = 0; q < PER_LANE; q++) w[q] = 0.0f;
    for (int j = 0; j < p.m; j++) {
        const float* gaj = sc.ga + ((long long)b * p.m + j) * p.d;
        float aij = sc.a[row + j], s = 0.0f;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) { s += v[q] * gaj[k]; w[q] += al * aij * gaj[k]; } }
        s = warp_sum(s);  // g_w_ij
        ga += aij * s;
        if (lane == j) g_a = al * s;
    }
    for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) gphi[((long long)b * p.n + i) * p.d + k] = gp[q] + w[q]; }
    if (lane == 0) galpha[b * p.n + i] = ga;
    float dotp = warp_sum(a_l * g_a);
    if (lane < p.m) sc.gza[row + lane] = p.lambda_a * a_l * (g_a - dotp);
}

// Backward, warp per slot j: sum_i pb g_pb (softmax over i) and sum_i z g_za (norm over i).
extern "C" __global__ void xattn_grad_cols(XAttn p, Scratch sc) {
    const int b = blockIdx.x, j = blockIdx.y, lane = threadIdx.x;
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = lane; i < p.n; i += 32) {
        long long k = ((long long)b * p.n + i) * p.m + j;
        s1 += sc.pb[k] * sc.gpb[k];
        s2 += sc.z[k] * sc.gza[k];
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    if (lane == 0) { sc.colb[b * p.m + j] = s1; sc.colz[b * p.m + j] = s2; }
}

// Backward, warp per ROI: back through both normalisations, the mask and
// leaky ReLU, and the cosine to phi (added to gphi).
extern "C" __global__ void xattn_grad_scores(XAttn p, const float* phi, const float* m, const float* mask, Scratch sc, float* gphi) {
    const int b = blockIdx.x, lane = threadIdx.x % 32;
    const int i = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (i >= p.n) return;
    const long long row = ((long long)b * p.n + i) * p.m;
    float gz = 0.0f, z = 0.0f, gzb = 0.0f, w[PER_LANE], v[PER_LANE];
    const float rb = sc.rb[b * p.n + i];
    if (lane < p.m) {
        z = sc.z[row + lane];
        float ca = sc.ca[b * p.m + lane];
        gzb = p.lambda_b * sc.pb[row + lane] * (sc.gpb[row + lane] - sc.colb[b * p.m + lane]);
        float k = ca > 0.0f ? sc.colz[b * p.m + lane] / ((ca + E) * (ca + E) * ca) : 0.0f;
        gz = sc.gza[row + lane] / (ca + E) - z * k;
    }
    float zgb = warp_sum(z * gzb);
    float kr = rb > 0.0f ? zgb / ((rb + E) * (rb + E) * rb) : 0.0f;
    gz += gzb / (rb + E) - z * kr;
    float gs = lane < p.m ? gz * mask[b * p.m + lane] * (sc.s[row + lane] > 0.0f ? 1.0f : p.slope) : 0.0f;
    // g_ph = sum_j g_s_ij m_j / (|m_j| + E)
    for (int q = 0; q < PER_LANE; q++) w[q] = 0.0f;
    for (int j = 0; j < p.m; j++) {
        float gsj = __shfl_sync(0xffffffffu, gs, j) / (sc.nm[b * p.m + j] + E);
        const float* mj = m + ((long long)b * p.m + j) * p.d;
        for (int q = 0; q < PER_LANE; q++) { int k = lane + 32 * q; if (k < p.d) w[q] += gsj * mj[k]; }
    }
    load_row(phi + ((long long)b * p.n + i) * p.d, p.d, v);
    float pn = sc.pn[b * p.n + i], xg = 0.0f;
    for (int q = 0; q < PER_LANE; q++) xg += v[q] * w[q];
    xg = warp_sum(xg);
    float k = pn > 0.0f ? xg / ((pn + E) * (pn + E) * pn) : 0.0f;
    for (int q = 0; q < PER_LANE; q++) { int kk = lane + 32 * q; if (kk < p.d) gphi[((long long)b * p.n + i) * p.d + kk] += w[q] / (pn + E) - v[q] * k; }
}
