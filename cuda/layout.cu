// Data movement: permutation of axes (any rank up to 6) and copies of a
// slab along one axis (concatenation forward, its split backward).
#include "common.cuh"

extern "C" __global__ void permute(Permute l, const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long o = i, src = 0;
        for (int d = (int)l.rank - 1; d >= 0; d--) {
            src += (o % l.out_dims[d]) * (long long)l.in_strides[d];
            o /= l.out_dims[d];
        }
        y[i] = x[src];
    }
}

// [outer, len, inner] block <-> the rows [start, start + len) of an
// [outer, total, inner] tensor. to_big = 1 writes src into the big tensor.
extern "C" __global__ void axis_copy(const float* src, float* dst, int outer, int len, int inner, int total, int start, int to_big) {
    long long n = (long long)outer * len * inner;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long k = i % inner, j = (i / inner) % len, o = i / ((long long)inner * len);
        long long big = (o * total + start + j) * inner + k;
        if (to_big) dst[big] = src[i]; else dst[i] = src[big];
    }
}
