// Max-pooling (window k, stride, padding with -inf; the arg-max index within
// the plane is kept for the backward pass) and nearest upsampling to a size
// (PyTorch's rule: src = floor(dst * in / out) in f32). Both backward passes
// gather (each input element sums the outputs that came from it), so they
// are deterministic without atomics.
#include "common.cuh"
#include <cfloat>

extern "C" __global__ void max_pool2d_fwd(Pool2d p, const float* x, float* y, float* argmax) {
    long long total = (long long)p.n * p.c * p.oh * p.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ow = i % p.ow, oh = (i / p.ow) % p.oh;
        long long plane = i / ((long long)p.oh * p.ow);
        const float* xp = x + plane * p.h * p.w;
        float best = -FLT_MAX;
        int arg = -1;
        for (int r = 0; r < p.k; r++) {
            int ih = oh * p.stride - p.pad + r;
            if (ih < 0 || ih >= p.h) continue;
            for (int s = 0; s < p.k; s++) {
                int iw = ow * p.stride - p.pad + s;
                if (iw < 0 || iw >= p.w) continue;
                float v = xp[ih * p.w + iw];
                if (arg < 0 || v > best || isnan(v)) { best = v; arg = ih * p.w + iw; }
                if (isnan(v)) break;
            }
        }
        y[i] = best;
        argmax[i] = (float)arg;
    }
}

extern "C" __global__ void max_pool2d_bwd(Pool2d p, const float* gy, const float* argmax, float* gx) {
    long long total = (long long)p.n * p.c * p.h * p.w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int iw = i % p.w, ih = (i / p.w) % p.h;
        long long plane = i / ((long long)p.h * p.w);
        int me = ih * p.w + iw;
        // outputs whose window holds (ih, iw): oh*stride - pad <= ih <= oh*stride - pad + k - 1
        int oh0 = max(0, (ih + p.pad - p.k + p.stride) / p.stride), oh1 = min(p.oh - 1, (ih + p.pad) / p.stride);
        int ow0 = max(0, (iw + p.pad - p.k + p.stride) / p.stride), ow1 = min(p.ow - 1, (iw + p.pad) / p.stride);
        float s = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                long long o = (plane * p.oh + oh) * p.ow + ow;
                if ((int)argmax[o] == me) s += gy[o];
            }
        gx[i] = s;
    }
}

__device__ __forceinline__ int nearest_src(int dst, int in, int out) {
    return min((int)floorf(dst * ((float)in / (float)out)), in - 1);
}

extern "C" __global__ void upsample_nearest_fwd(Pool2d p, const float* x, float* y) {
    long long total = (long long)p.n * p.c * p.oh * p.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ow = i % p.ow, oh = (i / p.ow) % p.oh;
        long long plane = i / ((long long)p.oh * p.ow);
        y[i] = x[plane * p.h * p.w + nearest_src(oh, p.h, p.oh) * p.w + nearest_src(ow, p.w, p.ow)];
    }
}

extern "C" __global__ void upsample_nearest_bwd(Pool2d p, const float* gy, float* gx) {
    long long total = (long long)p.n * p.c * p.h * p.w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int iw = i % p.w, ih = (i / p.w) % p.h;
        long long plane = i / ((long long)p.h * p.w);
        // outputs mapping to ih lie near ih * out / in; scan a small range and test the rule itself
        int oh0 = max(0, (int)((long long)ih * p.oh / p.h) - 1), oh1 = min(p.oh - 1, (int)((long long)(ih + 1) * p.oh / p.h) + 1);
        int ow0 = max(0, (int)((long long)iw * p.ow / p.w) - 1), ow1 = min(p.ow - 1, (int)((long long)(iw + 1) * p.ow / p.w) + 1);
        float s = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++) {
            if (nearest_src(oh, p.h, p.oh) != ih) continue;
            for (int ow = ow0; ow <= ow1; ow++)
                if (nearest_src(ow, p.w, p.ow) == iw) s += gy[(plane * p.oh + oh) * p.ow + ow];
        }
        gx[i] = s;
    }
}
