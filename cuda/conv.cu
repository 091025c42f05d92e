// 2-D convolution (stride, padding, dilation, groups, bias) as implicit GEMM
// on the tile engine of tile.cuh: no im2col buffer, the loaders gather the
// input window elements on the fly. NCHW, as torchvision. Per group g
// (grid z), with Cg = c/groups, Kg = k/groups, RS = r*s:
//   forward  y[n,k,p]   = sum_{crs} W[k, crs] * x_col[crs, (n,p)]      M=Kg, N=n*oh*ow, K=Cg*RS
//   data     gx[n,c,q]  = sum_{krs} W[k, c, rs] * gy_col[krs, (n,q)]   M=Cg, N=n*h*w,   K=Kg*RS
//   weight   gw[k, crs] = sum_{(n,p)} gy[n,k,p] * x_col[crs, (n,p)]   M=Kg, N=Cg*RS,   K=n*oh*ow
// The data gradient gathers gy at oh = (ih + pad - r*dil) / stride where
// that divides exactly. The weight gradient splits its long reduction over
// grid z (partials summed in a fixed order by conv2d_wgrad_sum).
#include "tile.cuh"

// x_col[crs, (n, oh, ow)]: the input element under kernel tap crs at output pixel.
__device__ __forceinline__ float x_col(const Conv2d& p, const float* x, int g, int crs, int pix) {
    int RS = p.r * p.s, Cg = p.c / p.groups;
    int c = crs / RS, rs = crs - c * RS, r = rs / p.s, s = rs - r * p.s;
    int OHW = p.oh * p.ow;
    int n = pix / OHW, q = pix - n * OHW, oh = q / p.ow, ow = q - oh * p.ow;
    int ih = oh * p.stride_h - p.pad_h + r * p.dil_h, iw = ow * p.stride_w - p.pad_w + s * p.dil_w;
    if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) return 0.0f;
    return x[(((long long)n * p.c + g * Cg + c) * p.h + ih) * p.w + iw];
}

extern "C" __global__ void __launch_bounds__(256, 2) conv2d_fwd(Conv2d p, const float* x, const float* w, const float* bias, float* y) {
    const int g = blockIdx.z, Cg = p.c / p.groups, Kg = p.k / p.groups, CRS = Cg * p.r * p.s, OHW = p.oh * p.ow;
    auto la = [&](int k, int crs) { return w[(long long)(g * Kg + k) * CRS + crs]; };
    auto lb = [&](int crs, int pix) { return x_col(p, x, g, crs, pix); };
    auto st = [&](int k, int pix, float v) {
        int n = pix / OHW, q = pix - n * OHW;
        int kk = g * Kg + k;
        y[((long long)n * p.k + kk) * OHW + q] = v + (bias ? bias[kk] : 0.0f);
    };
    tile_gemm(Kg, p.n * OHW, 0, CRS, blockIdx.y * TILE_M, blockIdx.x * TILE_N, false, true, la, lb, st);
}

extern "C" __global__ void __launch_bounds__(256, 2) conv2d_dgrad(Conv2d p, const float* gy, const float* w, float* gx) {
    const int g = blockIdx.z, Cg = p.c / p.groups, Kg = p.k / p.groups, RS = p.r * p.s, HW = p.h * p.w;
    auto la = [&](int c, int krs) {
        int k = krs / RS, rs = krs - k * RS;
        return w[((long long)(g * Kg + k) * Cg + c) * RS + rs];
    };
    auto lb = [&](int krs, int pix) {
        int k = krs / RS, rs = krs - k * RS, r = rs / p.s, s = rs - r * p.s;
        int n = pix / HW, q = pix - n * HW, ih = q / p.w, iw = q - ih * p.w;
        int th = ih + p.pad_h - r * p.dil_h, tw = iw + p.pad_w - s * p.dil_w;
        if (th < 0 || tw < 0 || th % p.stride_h || tw % p.stride_w) return 0.0f;
        int oh = th / p.stride_h, ow = tw / p.stride_w;
        if (oh >= p.oh || ow >= p.ow) return 0.0f;
        return gy[(((long long)n * p.k + g * Kg + k) * p.oh + oh) * p.ow + ow];
    };
    auto st = [&](int c, int pix, float v) {
        int n = pix / HW, q = pix - n * HW;
        gx[((long long)n * p.c + g * Cg + c) * HW + q] = v;
    };
    tile_gemm(Cg, p.n * HW, 0, Kg * RS, blockIdx.y * TILE_M, blockIdx.x * TILE_N, true, true, la, lb, st);
}

// grid z = groups * splits; split s covers pixels [s*chunk, (s+1)*chunk).
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_wgrad(Conv2d p, const float* x, const float* gy, float* partial,
                                                                  int splits, int chunk) {
    const int g = blockIdx.z / splits, split = blockIdx.z % splits;
    const int Cg = p.c / p.groups, Kg = p.k / p.groups, CRS = Cg * p.r * p.s, OHW = p.oh * p.ow, NP = p.n * OHW;
    auto la = [&](int k, int pix) {
        int n = pix / OHW, q = pix - n * OHW;
        return gy[((long long)n * p.k + g * Kg + k) * OHW + q];
    };
    auto lb = [&](int pix, int crs) { return x_col(p, x, g, crs, pix); };
    float* out = partial + (long long)split * p.k * CRS;
    auto st = [&](int k, int crs, float v) { out[(long long)(g * Kg + k) * CRS + crs] = v; };
    int k_begin = split * chunk, k_end = min(NP, k_begin + chunk);
    tile_gemm(Kg, CRS, k_begin, k_end, blockIdx.y * TILE_M, blockIdx.x * TILE_N, false, false, la, lb, st);
}

extern "C" __global__ void conv2d_wgrad_sum(const float* partial, float* gw, long long n, int splits) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = 0.0f;
    for (int k = 0; k < splits; k++) s += partial[k * n + i];
    gw[i] = s;
}
