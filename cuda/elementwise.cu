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

// One thread per (input element i, chunk c of the reduced indices): partial
// sums of RED_CHUNK reduced elements, then reduce_broadcast_sum adds the
// chunks in a fixed order (deterministic, no atomics). Adjacent threads take
// adjacent i, so a bias gradient's loads coalesce.
#define RED_CHUNK 64

__device__ __forceinline__ long long decode(long long i, const unsigned int* dims, const unsigned int* strides, int rank) {
    long long off = 0;
    for (int d = rank - 1; d >= 0; d--) {
        off += (i % dims[d]) * (long long)strides[d];
        i /= dims[d];
    }
    return off;
}

extern "C" __global__ void reduce_broadcast(ReduceLayout l, const float* g, float* partial, long long kept, long long red) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= kept) return;
    long long c = blockIdx.y;
    long long base = decode(i, l.kept_dims, l.out_strides, l.rank);
    long long j1 = min(red, (c + 1) * RED_CHUNK);
    float s = 0.0f;
    for (long long j = c * RED_CHUNK; j < j1; j++) s += g[base + decode(j, l.red_dims, l.out_strides, l.rank)];
    partial[c * kept + i] = s;
}

extern "C" __global__ void reduce_broadcast_sum(const float* partial, float* out, long long kept, int chunks) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= kept) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += partial[c * kept + i];
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
