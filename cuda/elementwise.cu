// Element-wise ops: unary (ReLU, leaky ReLU, sigmoid, tanh, scale) forward
// and backward, broadcast binary ops (add, mul) and the sum that takes a
// broadcast gradient back to its input's shape; axpy for gradient
// accumulation. Op codes match backend::Unary::code / Binary::code.
#include "common.cuh"

__device__ __forceinline__ float unary_f(int op, float p, float x) {
    switch (op) {
        case 0: return fmaxf(x, 0.0f);
        case 1: return x > 0.0f ? x : x * p;
        case 2: return 1.0f / (1.0f + expf(-x));
        case 3: return tanhf(x);
        default: return x * p;
    }
}

extern "C" __global__ void unary_fwd(int op, float p, const float* x, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = unary_f(op, p, x[i]);
}

// gx = gy * f'(x); sigmoid and tanh use y = f(x).
extern "C" __global__ void unary_bwd(int op, float p, const float* x, const float* y, const float* gy, float* gx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = gy[i], r;
        switch (op) {
            case 0: r = x[i] > 0.0f ? g : 0.0f; break;
            case 1: r = x[i] > 0.0f ? g : g * p; break;
            case 2: r = g * y[i] * (1.0f - y[i]); break;
            case 3: r = g * (1.0f - y[i] * y[i]); break;
            default: r = g * p;
        }
        gx[i] = r;
    }
}

extern "C" __global__ void binary_fwd(int op, Broadcast l, const float* a, const float* b, float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long o = i, ia = 0, ib = 0;
        for (int d = (int)l.rank - 1; d >= 0; d--) {
            long long idx = o % l.out_dims[d];
            o /= l.out_dims[d];
            ia += idx * l.a_strides[d];
            ib += idx * l.b_strides[d];
        }
        y[i] = op == 0 ? a[ia] + b[ib] : a[ia] * b[ib];
    }
}

// One thread per input element, summing over the broadcast dimensions
// (adjacent threads read adjacent outputs, so the loads coalesce).
extern "C" __global__ void reduce_broadcast(ReduceLayout l, const float* g, float* out, long long kept, long long red) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= kept) return;
    float s = 0.0f;
    for (long long j = 0; j < red; j++) {
        long long ii = i, jj = j, off = 0;
        for (int d = (int)l.rank - 1; d >= 0; d--) {
            off += (ii % l.kept_dims[d] + jj % l.red_dims[d]) * (long long)l.out_strides[d];
            ii /= l.kept_dims[d];
            jj /= l.red_dims[d];
        }
        s += g[off];
    }
    out[i] = s;
}

extern "C" __global__ void axpy(float* acc, float alpha, const float* x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc[i] += alpha * x[i];
}

extern "C" __global__ void fill(float* x, float v, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = v;
}
