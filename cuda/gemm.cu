// Batched f32 matrix product C = alpha op(A) op(B) + beta C (row-major; see
// backend::Gemm), on the CUDA cores in full f32 (no TF32: results match the
// CPU to 1e-6), with the tile engine of tile.cuh. The batch is grid z
// (stride 0 shares a matrix).
#include "tile.cuh"

__device__ __forceinline__ void gemm_body(const Gemm& g, const float* A, const float* B, float* C) {
    A += blockIdx.z * g.stride_a;
    B += blockIdx.z * g.stride_b;
    C += blockIdx.z * g.stride_c;
    const bool ta = g.trans_a, tb = g.trans_b;
    const int M = g.m, N = g.n, K = g.k;
    auto la = [&](int r, int c) { return ta ? A[(long long)c * M + r] : A[(long long)r * K + c]; };
    auto lb = [&](int k, int n) { return tb ? B[(long long)n * K + k] : B[(long long)k * N + n]; };
    auto st = [&](int r, int c, float v) {
        float* out = C + (long long)r * N + c;
        // beta == 0 never reads C, so an uninitialised C cannot leak NaN.
        *out = g.beta == 0.0f ? g.alpha * v : g.alpha * v + g.beta * *out;
    };
    // Load along memory order: rows of op(A) are contiguous when A is stored transposed.
    tile_gemm<128>(M, N, 0, K, blockIdx.y * 128, blockIdx.x * TILE_N, ta, !tb, la, lb, st);
}

// Two blocks per SM (127 registers, no spills).
extern "C" __global__ void __launch_bounds__(256, 2) gemm_f32(Gemm g, const float* A, const float* B, float* C) {
    gemm_body(g, A, B, C);
}

// Split-K for one matrix with few output tiles and a long K (weight
// gradients: [d, d'] = x^T g over thousands of rows): grid z splits K in
// chunks of `chunk`; each writes its partial product, gemm_splitk_sum adds
// them in order and applies alpha and beta.
extern "C" __global__ void __launch_bounds__(256, 2) gemm_f32_splitk(Gemm g, const float* A, const float* B, float* partial, int chunk) {
    const bool ta = g.trans_a, tb = g.trans_b;
    const int M = g.m, N = g.n, K = g.k;
    auto la = [&](int r, int c) { return ta ? A[(long long)c * M + r] : A[(long long)r * K + c]; };
    auto lb = [&](int k, int n) { return tb ? B[(long long)n * K + k] : B[(long long)k * N + n]; };
    float* out = partial + (long long)blockIdx.z * M * N;
    auto st = [&](int r, int c, float v) { out[(long long)r * N + c] = v; };
    int k0 = blockIdx.z * chunk, k1 = min(K, k0 + chunk);
    tile_gemm<128>(M, N, k0, k1, blockIdx.y * 128, blockIdx.x * TILE_N, ta, !tb, la, lb, st);
}

extern "C" __global__ void gemm_splitk_sum(const float* partial, float* C, long long mn, int splits, float alpha, float beta) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= mn) return;
    float s = 0.0f;
    for (int k = 0; k < splits; k++) s += partial[k * mn + i];
    C[i] = beta == 0.0f ? alpha * s : alpha * s + beta * C[i];
}
