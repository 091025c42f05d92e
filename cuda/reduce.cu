// Sum and mean along one axis, and the sum of squares used by gradient-norm
// clipping. One warp per line of the [outer, n, inner] view.
#include "common.cuh"

extern "C" __global__ void sum_axis_fwd(const float* x, float* y, int outer, int n, int inner, int mean) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    float s = 0.0f;
    for (int j = threadIdx.x % 32; j < n; j += 32) s += x[l.base + (long long)j * l.stride];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) y[l.index] = mean ? s / n : s;
}

extern "C" __global__ void sum_axis_bwd(const float* gy, float* gx, int outer, int n, int inner, int mean) {
    Line l;
    if (!warp_line(outer, n, inner, &l)) return;
    float g = mean ? gy[l.index] / n : gy[l.index];
    for (int j = threadIdx.x % 32; j < n; j += 32) gx[l.base + (long long)j * l.stride] = g;
}

// Partial sums of squares, one per block, in f64; the host adds the partials.
extern "C" __global__ void sum_squares(const float* x, double* partial, long long n) {
    double s = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
