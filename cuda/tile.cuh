// The f32 tile engine shared by the matrix product and the implicit-GEMM
// convolutions: C[m, n] = sum_k A(m, k) B(k, n) over k in [k_begin, k_end),
// where A and B are loader functors (return the element, the caller
// guarantees the indices are in range) and the store functor receives every
// in-range (m, n, value). A 256-thread block computes a TM x 128 tile of C
// (TM = 128, or 64 for GEMMs of at most 64 rows, which would leave half of a
// 128-row tile idle), staging 8-deep K-slices in shared memory (k-major,
// read as float4); each thread owns TM/16 x 8 values of C made of 4x4
// quadrants 64 apart (conflict-free shared reads, contiguous stores); the
// next slice is fetched into registers while the current one is computed.
// `a_rows_fast` / `b_cols_fast` choose which index consecutive threads walk
// when loading, to follow each operand's memory order.
#pragma once
#include "tile_load.cuh"

template <int TM, class LA, class LB, class ST>
__device__ __forceinline__ void tile_gemm(int M, int N, int k_begin, int k_end, int m0, int n0,
                                          bool a_rows_fast, bool b_cols_fast, const LA& la, const LB& lb, const ST& st) {
    static_assert(TM == 64 || TM == 128, "tile rows");
    constexpr int AQ = TM * TILE_K / 256;  // A elements each thread stages per slice
    constexpr int RM = TM / 16;            // rows of C each thread owns
    __shared__ __align__(16) float As[TILE_K][TM];
    __shared__ __align__(16) float Bs[TILE_K][TILE_N];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float ra[AQ], rb[4];
    auto fetch = [&](int k0) { tile_fetch<TM, AQ>(M, N, k0, k_end, m0, n0, a_rows_fast, b_cols_fast, la, lb, ra, rb); };
    fetch(k_begin);
    float acc[RM][8] = {};
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
#pragma unroll
        for (int q = 0; q < AQ; q++) As[TILE_AC(q)][TILE_AR(q)] = ra[q];
#pragma unroll
        for (int q = 0; q < 4; q++) Bs[TILE_BK(q)][TILE_BN(q)] = rb[q];
        __syncthreads();
        if (k0 + TILE_K < k_end) fetch(k0 + TILE_K);
#pragma unroll
        for (int kk = 0; kk < TILE_K; kk++) {
            float a[RM];
#pragma unroll
            for (int h = 0; h < RM / 4; h++) {
                float4 a4 = *reinterpret_cast<const float4*>(&As[kk][64 * h + ty * 4]);
                a[4 * h] = a4.x, a[4 * h + 1] = a4.y, a[4 * h + 2] = a4.z, a[4 * h + 3] = a4.w;
            }
            float4 b0 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            float4 b1 = *reinterpret_cast<const float4*>(&Bs[kk][64 + tx * 4]);
            float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < RM; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < RM; i++) {
        int r = m0 + 64 * (i / 4) + ty * 4 + i % 4;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int c = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
            if (c < N) st(r, c, acc[i][j]);
        }
    }
}
