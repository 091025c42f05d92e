// Batched f32 matrix product C = alpha op(A) op(B) + beta C (row-major; see
// backend::Gemm), on the CUDA cores in full f32 (no TF32: results match the
// CPU to 1e-6). A 256-thread block computes a 128x128 tile of C in 8-deep
// slices of K staged in shared memory (k-major, so each thread reads its
// operands as float4). Each thread owns an 8x8 block of C made of four 4x4
// quadrants 64 apart: the float4 shared reads of a warp are conflict-free
// and a warp's stores cover 64 contiguous columns. Loads follow memory order
// for each transpose; out-of-range elements are staged as zeros. The next
// K-slice is fetched into registers while the current one is computed.
// The batch is grid z (stride 0 shares a matrix).
#include "common.cuh"

#define BM 128
#define BN 128
#define BK 8

__device__ __forceinline__ float load_a(const Gemm& g, const float* A, int r, int c) {
    if (r >= (int)g.m || c >= (int)g.k) return 0.0f;
    return g.trans_a ? A[(long long)c * g.m + r] : A[(long long)r * g.k + c];
}

__device__ __forceinline__ float load_b(const Gemm& g, const float* B, int kk, int nn) {
    if (kk >= (int)g.k || nn >= (int)g.n) return 0.0f;
    return g.trans_b ? B[(long long)nn * g.k + kk] : B[(long long)kk * g.n + nn];
}

template <int MIN_BLOCKS>
__device__ __forceinline__ void gemm_tile(const Gemm& g, const float* A, const float* B, float* C) {
    A += blockIdx.z * g.stride_a;
    B += blockIdx.z * g.stride_b;
    C += blockIdx.z * g.stride_c;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;

    // The tile elements this thread stages (4 of A, 4 of B), in memory order:
    // element q sits at (row, col) of the tile as these macros say.
#define AR(q) (g.trans_a ? (tid + 256 * (q)) % BM : (tid + 256 * (q)) / BK)
#define AC(q) (g.trans_a ? (tid + 256 * (q)) / BM : (tid + 256 * (q)) % BK)
#define BKK(q) (g.trans_b ? (tid + 256 * (q)) % BK : (tid + 256 * (q)) / BN)
#define BNN(q) (g.trans_b ? (tid + 256 * (q)) / BK : (tid + 256 * (q)) % BN)
    float ra[4], rb[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        ra[q] = load_a(g, A, m0 + AR(q), AC(q));
        rb[q] = load_b(g, B, BKK(q), n0 + BNN(q));
    }

    float acc[8][8] = {};
    for (int k0 = 0; k0 < (int)g.k; k0 += BK) {
#pragma unroll
        for (int q = 0; q < 4; q++) {
            As[AC(q)][AR(q)] = ra[q];
            Bs[BKK(q)][BNN(q)] = rb[q];
        }
        __syncthreads();
        if (k0 + BK < (int)g.k) {  // prefetch the next slice while computing this one
#pragma unroll
            for (int q = 0; q < 4; q++) {
                ra[q] = load_a(g, A, m0 + AR(q), k0 + BK + AC(q));
                rb[q] = load_b(g, B, k0 + BK + BKK(q), n0 + BNN(q));
            }
        }
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float4 a0 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
            float4 a1 = *reinterpret_cast<const float4*>(&As[kk][64 + ty * 4]);
            float4 b0 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            float4 b1 = *reinterpret_cast<const float4*>(&Bs[kk][64 + tx * 4]);
            float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int r = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
        if (r >= (int)g.m) continue;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int c = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
            if (c >= (int)g.n) continue;
            float* out = C + (long long)r * g.n + c;
            // beta == 0 never reads C, so an uninitialised C cannot leak NaN.
            *out = g.beta == 0.0f ? g.alpha * acc[i][j] : g.alpha * acc[i][j] + g.beta * *out;
        }
    }
}

// Two register budgets of the same tile, measured side by side (bench
// gemm_f32 with ENGINE_GEMM=occ1): 2 blocks per SM (128 registers, a few
// spills) or 1 block per SM (161 registers, none).
extern "C" __global__ void __launch_bounds__(256, 2) gemm_f32(Gemm g, const float* A, const float* B, float* C) {
    gemm_tile<2>(g, A, B, C);
}
extern "C" __global__ void __launch_bounds__(256, 1) gemm_f32_occ1(Gemm g, const float* A, const float* B, float* C) {
    gemm_tile<1>(g, A, B, C);
}
