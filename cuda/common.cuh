// Shared helpers of the engine's kernels. Glossary (as in src/shape.rs):
// [outer, n, inner] is a tensor viewed around one axis of length n; a "line"
// is one (outer, inner) pair, the n elements a reduction along the axis reads.
// Row-major everywhere; all kernels are f32.
#pragma once
#include <cstdint>

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define MAX_RANK 6

// Mirrors shape::Broadcast (repr(C)).
struct Broadcast {
    unsigned int rank;
    unsigned int out_dims[MAX_RANK];
    unsigned int a_strides[MAX_RANK];
    unsigned int b_strides[MAX_RANK];
};

// Mirrors shape::ReduceLayout (repr(C)).
struct ReduceLayout {
    unsigned int rank;
    unsigned int kept_dims[MAX_RANK];
    unsigned int red_dims[MAX_RANK];
    unsigned int out_strides[MAX_RANK];
};

// Mirrors backend::Gemm (repr(C)).
struct Gemm {
    unsigned int batch, m, n, k, trans_a, trans_b;
    unsigned long long stride_a, stride_b, stride_c;
    float alpha, beta;
};

// Mirrors backend::Conv2d (repr(C)). Input [n, c, h, w], weight
// [k, c/groups, r, s], output [n, k, oh, ow].
struct Conv2d {
    int n, c, h, w, k, r, s, oh, ow;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};

// Mirrors backend::Pool2d (repr(C)): max-pool window k, or nearest
// upsampling when k = 0 (then stride and pad are unused).
struct Pool2d {
    int n, c, h, w, oh, ow, k, stride, pad;
};

// Mirrors backend::Permute (repr(C)): out[i] = in[sum_d idx_d(i) * in_strides[d]]
// where idx is the index of i in out_dims.
struct Permute {
    unsigned int rank;
    unsigned int out_dims[MAX_RANK];
    unsigned int in_strides[MAX_RANK];
};

// Mirrors backend::XAttn (repr(C)): the fused cross-attention of b samples,
// n ROIs, m attribute slots (<= 32), d features (<= 256).
struct XAttn {
    int b, n, m, d;
    float lambda_a, lambda_b, slope;
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Warp-per-line addressing: each warp of a block handles one line of the
// [outer, n, inner] view; element j of the line is at base + j * inner.
struct Line {
    long long base;
    int stride;
    int index;  // line number = o * inner + k
};

__device__ __forceinline__ bool warp_line(int outer, int n, int inner, Line* l) {
    int warps = blockDim.x / 32;
    long long line = (long long)blockIdx.x * warps + threadIdx.x / 32;
    if (line >= (long long)outer * inner) return false;
    long long o = line / inner, k = line % inner;
    l->base = o * n * inner + k;
    l->stride = inner;
    l->index = (int)line;
    return true;
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024); all threads get it.
__device__ __forceinline__ double block_sum_d(double v) {
    __shared__ double part[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum_d(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int warps = blockDim.x / 32;
    v = (threadIdx.x < warps) ? part[threadIdx.x] : 0.0;
    if (warp == 0) v = warp_sum_d(v);
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    double r = part[0];
    __syncthreads();
    return r;
}
