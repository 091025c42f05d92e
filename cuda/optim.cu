// Optimizer updates, one thread per parameter element: SGD with momentum and
// L2 weight decay (torch.optim.SGD, dampening 0) and Adam (torch.optim.Adam);
// the in-place scale used by gradient-norm clipping.
#include "common.cuh"

extern "C" __global__ void sgd_step(float* p, const float* g, float* buf, long long n, float lr, float momentum, float wd) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float d = g[i] + wd * p[i];
        float b = momentum * buf[i] + d;
        buf[i] = b;
        p[i] -= lr * b;
    }
}

// bc1, bc2: bias corrections 1 - beta^step, computed on the host.
extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, long long n, float lr, float beta1,
                                     float beta2, float eps, float wd, float bc1, float bc2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float d = g[i] + wd * p[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * d;
        float vi = beta2 * v[i] + (1.0f - beta2) * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

extern "C" __global__ void scale_inplace(float* x, float c, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] *= c;
}
