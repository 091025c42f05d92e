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

// Row i of y = line lines[i] (o * inner + k) of the [outer, n, inner] view of x.
extern "C" __global__ void gather_lines(const float* x, float* y, const unsigned int* lines, int count, int n, int inner) {
    long long total = (long long)count * n;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
        long long i = t / n, j = t % n;
        long long line = lines[i], o = line / inner, k = line % inner;
        y[t] = x[(o * n + j) * inner + k];
    }
}
