// Batched f32 matrix product C = alpha op(A) op(B) + beta C (row-major; see
// backend::Gemm). Tiled: a 256-thread block computes a 64x64 tile of C in
// 16-deep slices of K staged in shared memory; each thread owns a 4x4 grid
// of outputs strided by 16, so shared reads are broadcast-friendly and the
// global stores of a warp are contiguous. The batch is grid z.
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16

extern "C" __global__ void __launch_bounds__(256) gemm_f32(Gemm g, const float* A, const float* B, float* C) {
    const int M = g.m, N = g.n, K = g.k;
    A += blockIdx.z * g.stride_a;
    B += blockIdx.z * g.stride_b;
    C += blockIdx.z * g.stride_c;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4] = {};

    for (int k0 = 0; k0 < K; k0 += BK) {
        // Stage op(A)[m0.., k0..] as As[k][m], reading along memory order.
        for (int e = tid; e < BM * BK; e += 256) {
            int r, c;
            if (g.trans_a) { r = e % BM; c = e / BM; } else { c = e % BK; r = e / BK; }
            int gr = m0 + r, gc = k0 + c;
            float v = 0.0f;
            if (gr < M && gc < K) v = g.trans_a ? A[(long long)gc * M + gr] : A[(long long)gr * K + gc];
            As[c][r] = v;
        }
        // Stage op(B)[k0.., n0..] as Bs[k][n].
        for (int e = tid; e < BK * BN; e += 256) {
            int kk, nn;
            if (g.trans_b) { kk = e % BK; nn = e / BK; } else { nn = e % BN; kk = e / BN; }
            int gk = k0 + kk, gn = n0 + nn;
            float v = 0.0f;
            if (gk < K && gn < N) v = g.trans_b ? B[(long long)gn * K + gk] : B[(long long)gk * N + gn];
            Bs[kk][nn] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = m0 + ty + 16 * i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int c = n0 + tx + 16 * j;
            if (c >= N) continue;
            float* out = C + (long long)r * N + c;
            // beta == 0 never reads C, so an uninitialised C cannot leak NaN.
            *out = g.beta == 0.0f ? g.alpha * acc[i][j] : g.alpha * acc[i][j] + g.beta * *out;
        }
    }
}
