// The K-slice loads shared by both tile engines (tile.cuh on the CUDA
// cores, tile_tf32.cuh on the tensor cores). A slice is TM x TILE_K of A and
// TILE_K x TILE_N of B, spread over a block's 256 threads; element q of a
// thread sits at row TILE_AR(q), column TILE_AC(q) of the A slice and at
// TILE_BK(q), TILE_BN(q) of the B slice. With `a_rows_fast` / `b_cols_fast`
// consecutive threads walk A's rows / B's columns, else the K index, to
// follow each operand's memory order. The macros expect `tid`, `TM`,
// `a_rows_fast` and `b_cols_fast` in scope.
#pragma once
#include "common.cuh"

#define TILE_N 128
#define TILE_K 8

#define TILE_AR(q) (a_rows_fast ? (tid + 256 * (q)) % TM : (tid + 256 * (q)) / TILE_K)
#define TILE_AC(q) (a_rows_fast ? (tid + 256 * (q)) / TM : (tid + 256 * (q)) % TILE_K)
#define TILE_BK(q) (b_cols_fast ? (tid + 256 * (q)) / TILE_N : (tid + 256 * (q)) % TILE_K)
#define TILE_BN(q) (b_cols_fast ? (tid + 256 * (q)) % TILE_N : (tid + 256 * (q)) / TILE_K)

// Loads this thread's AQ elements of A and 4 of B from the slice at k0 into
// registers, zero outside the matrices and past k_end.
template <int TM, int AQ, class LA, class LB>
__device__ __forceinline__ void tile_fetch(int M, int N, int k0, int k_end, int m0, int n0, bool a_rows_fast, bool b_cols_fast,
                                           const LA& la, const LB& lb, float (&ra)[AQ], float (&rb)[4]) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int q = 0; q < AQ; q++) {
        int r = m0 + TILE_AR(q), c = k0 + TILE_AC(q);
        ra[q] = (r < M && c < k_end) ? la(r, c) : 0.0f;
    }
#pragma unroll
    for (int q = 0; q < 4; q++) {
        int kk = k0 + TILE_BK(q), nn = n0 + TILE_BN(q);
        rb[q] = (kk < k_end && nn < N) ? lb(kk, nn) : 0.0f;
    }
}
