// The tile engine of tile.cuh on TF32 tensor cores (opt-in: `--tf32`, as
// PyTorch's default for cuDNN convolutions): the same slice loads
// (tile_load.cuh), stores, TM x 128 tiles and 8-deep K-slices, but the
// slices are rounded to TF32 (10-bit mantissa, to nearest, ties away) as
// they are staged in shared memory, and each of the 8 warps multiplies its
// (TM/2) x 32 part with mma.sync m16n8k8, accumulating in f32. Products of TF32 values are exact in f32, so the
// result equals an f32 GEMM of TF32-rounded inputs up to summation order
// (the test in tests/gpu.rs checks exactly that). Fragment layouts as in the
// PTX ISA (m16n8k8, .tf32): g = lane / 4, t = lane % 4;
//   A: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)   [row, k]
//   B: b0 (t, g), b1 (t+4, g)                               [k, col]
//   C: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
// Shared rows are padded by 8 floats so that the fragment reads of a warp
// hit 32 different banks.
#pragma once
#include "tile_load.cuh"

#define TF_PAD 8

__device__ __forceinline__ float to_tf32(float x) {
    unsigned int r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
}

__device__ __forceinline__ void mma_tf32(float* d, const unsigned int* a, const unsigned int* b) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int TM, class LA, class LB, class ST>
__device__ __forceinline__ void tile_gemm_tf32(int M, int N, int k_begin, int k_end, int m0, int n0,
                                               bool a_rows_fast, bool b_cols_fast, const LA& la, const LB& lb, const ST& st) {
    static_assert(TM == 64 || TM == 128, "tile rows");
    constexpr int AQ = TM * TILE_K / 256;  // A elements each thread stages per slice
    constexpr int BQ = TILE_N * TILE_K / 256;
    constexpr int MI = TM / 32;          // m16 tiles per warp (warps: 2 along M, 4 along N)
    constexpr int NI = 4;                // n8 tiles per warp
    __shared__ float As[TILE_K][TM + TF_PAD];
    __shared__ float Bs[TILE_K][TILE_N + TF_PAD];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
    const int wm = warp / 4, wn = warp % 4;
    float ra[AQ], rb[BQ];
    auto fetch = [&](int k0) { tile_fetch<TM, AQ>(M, N, k0, k_end, m0, n0, a_rows_fast, b_cols_fast, la, lb, ra, rb); };
    fetch(k_begin);
    float acc[MI][NI][4] = {};
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
#pragma unroll
        for (int q = 0; q < AQ; q++) As[TILE_AC(q)][TILE_AR(q)] = to_tf32(ra[q]);
#pragma unroll
        for (int q = 0; q < BQ; q++) Bs[TILE_BK(q)][TILE_BN(q)] = to_tf32(rb[q]);
        __syncthreads();
        if (k0 + TILE_K < k_end) fetch(k0 + TILE_K);
#pragma unroll
        for (int ks = 0; ks < TILE_K; ks += 8) {
            unsigned int a[MI][4], b[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                int rb0 = wm * (TM / 2) + mi * 16 + g;
                a[mi][0] = __float_as_uint(As[ks + t][rb0]);
                a[mi][1] = __float_as_uint(As[ks + t][rb0 + 8]);
                a[mi][2] = __float_as_uint(As[ks + t + 4][rb0]);
                a[mi][3] = __float_as_uint(As[ks + t + 4][rb0 + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                int cb = wn * 32 + ni * 8 + g;
                b[ni][0] = __float_as_uint(Bs[ks + t][cb]);
                b[ni][1] = __float_as_uint(Bs[ks + t + 4][cb]);
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) mma_tf32(acc[mi][ni], a[mi], b[ni]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int r = m0 + wm * (TM / 2) + mi * 16 + g + (q / 2) * 8;
                int c = n0 + wn * 32 + ni * 8 + 2 * t + q % 2;
                if (r < M && c < N) st(r, c, acc[mi][ni][q]);
            }
}
