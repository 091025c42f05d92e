// 2-D convolution (stride, padding, dilation, groups, bias) as implicit GEMM
// on the tile engine of tile.cuh: no im2col buffer, the loaders gather the
// input window elements on the fly. NCHW, as torchvision. Per group g
// (grid z), with Cg = c/groups, Kg = k/groups, RS = r*s:
//   forward  y[n,k,p]   = sum_{crs} W[k, crs] * x_col[crs, (n,p)]      M=Kg, N=n*oh*ow, K=Cg*RS
//   data     gx[n,c,q]  = sum_{krs} W[k, c, rs] * gy_col[krs, (n,q)]   M=Cg, N=n*h*w,   K=Kg*RS
//   weight   gw[k, crs] = sum_{(n,p)} gy[n,k,p] * x_col[crs, (n,p)]   M=Kg, N=Cg*RS,   K=n*oh*ow
// The data gradient gathers gy at oh = (ih + pad - r*dil) / stride where
// that divides exactly. The weight gradient splits its long reduction over
// grid z (partials summed in a fixed order by reduce_broadcast_sum in elementwise.cu).
// Index divisions use FastDiv (a multiply-high and a shift instead of the
// ~20 instructions of a division by a variable). Every kernel has four
// entries: 128- or 64-row tiles (`_m64`, for GEMMs of at most 64 rows), on
// the CUDA cores in f32 or on TF32 tensor cores (`_tf32`, opt-in);
// src/backend/cuda/conv.rs chooses.
#include "tile.cuh"
#include "tile_tf32.cuh"

template <int TM, bool TF, class LA, class LB, class ST>
__device__ __forceinline__ void conv_tile(int M, int N, int k_begin, int k_end, int m0, int n0, bool a_rows_fast, bool b_cols_fast,
                                          const LA& la, const LB& lb, const ST& st) {
    if constexpr (TF) tile_gemm_tf32<TM>(M, N, k_begin, k_end, m0, n0, a_rows_fast, b_cols_fast, la, lb, st);
    else tile_gemm<TM>(M, N, k_begin, k_end, m0, n0, a_rows_fast, b_cols_fast, la, lb, st);
}

// Mirrors backend::cuda::conv::FastDiv: n / d for 0 <= n < 2^31.
struct FastDiv {
    unsigned int d, mul, shift;
};
__device__ __forceinline__ int fdiv(const FastDiv& f, int n) {
    return (int)((__umulhi((unsigned int)n, f.mul) + (unsigned int)n) >> f.shift);
}

// Mirrors backend::cuda::conv::ConvDivs.
struct ConvDivs {
    FastDiv rs, s, ohw, ow, hw, w, stride_h, stride_w;
};

// x_col[crs, (n, oh, ow)]: the input element under kernel tap crs at output pixel.
__device__ __forceinline__ float x_col(const Conv2d& p, const ConvDivs& dv, const float* x, int g, int crs, int pix) {
    int RS = p.r * p.s, Cg = p.c / p.groups;
    int c = fdiv(dv.rs, crs), rs = crs - c * RS, r = fdiv(dv.s, rs), s = rs - r * p.s;
    int OHW = p.oh * p.ow;
    int n = fdiv(dv.ohw, pix), q = pix - n * OHW, oh = fdiv(dv.ow, q), ow = q - oh * p.ow;
    int ih = oh * p.stride_h - p.pad_h + r * p.dil_h, iw = ow * p.stride_w - p.pad_w + s * p.dil_w;
    if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) return 0.0f;
    return x[(((long long)n * p.c + g * Cg + c) * p.h + ih) * p.w + iw];
}

template <int TM, bool TF>
__device__ __forceinline__ void conv_fwd(const Conv2d& p, const ConvDivs& dv, const float* x, const float* w, const float* bias, float* y) {
    const int g = blockIdx.z, Cg = p.c / p.groups, Kg = p.k / p.groups, CRS = Cg * p.r * p.s, OHW = p.oh * p.ow;
    auto la = [&](int k, int crs) { return w[(long long)(g * Kg + k) * CRS + crs]; };
    auto lb = [&](int crs, int pix) { return x_col(p, dv, x, g, crs, pix); };
    auto st = [&](int k, int pix, float v) {
        int n = fdiv(dv.ohw, pix), q = pix - n * OHW;
        int kk = g * Kg + k;
        y[((long long)n * p.k + kk) * OHW + q] = v + (bias ? bias[kk] : 0.0f);
    };
    conv_tile<TM, TF>(Kg, p.n * OHW, 0, CRS, blockIdx.y * TM, blockIdx.x * TILE_N, false, true, la, lb, st);
}

template <int TM, bool TF>
__device__ __forceinline__ void conv_dgrad(const Conv2d& p, const ConvDivs& dv, const float* gy, const float* w, float* gx) {
    const int g = blockIdx.z, Cg = p.c / p.groups, Kg = p.k / p.groups, RS = p.r * p.s, HW = p.h * p.w;
    auto la = [&](int c, int krs) {
        int k = fdiv(dv.rs, krs), rs = krs - k * RS;
        return w[((long long)(g * Kg + k) * Cg + c) * RS + rs];
    };
    auto lb = [&](int krs, int pix) {
        int k = fdiv(dv.rs, krs), rs = krs - k * RS, r = fdiv(dv.s, rs), s = rs - r * p.s;
        int n = fdiv(dv.hw, pix), q = pix - n * HW, ih = fdiv(dv.w, q), iw = q - ih * p.w;
        int th = ih + p.pad_h - r * p.dil_h, tw = iw + p.pad_w - s * p.dil_w;
        if (th < 0 || tw < 0) return 0.0f;
        int oh = fdiv(dv.stride_h, th), ow = fdiv(dv.stride_w, tw);
        if (oh * p.stride_h != th || ow * p.stride_w != tw || oh >= p.oh || ow >= p.ow) return 0.0f;
        return gy[(((long long)n * p.k + g * Kg + k) * p.oh + oh) * p.ow + ow];
    };
    auto st = [&](int c, int pix, float v) {
        int n = fdiv(dv.hw, pix), q = pix - n * HW;
        gx[((long long)n * p.c + g * Cg + c) * HW + q] = v;
    };
    conv_tile<TM, TF>(Cg, p.n * HW, 0, Kg * RS, blockIdx.y * TM, blockIdx.x * TILE_N, true, true, la, lb, st);
}

// grid z = groups * splits; split s covers pixels [s*chunk, (s+1)*chunk).
template <int TM, bool TF>
__device__ __forceinline__ void conv_wgrad(const Conv2d& p, const ConvDivs& dv, const float* x, const float* gy, float* partial, int splits, int chunk) {
    const int g = blockIdx.z / splits, split = blockIdx.z % splits;
    const int Cg = p.c / p.groups, Kg = p.k / p.groups, CRS = Cg * p.r * p.s, OHW = p.oh * p.ow, NP = p.n * OHW;
    auto la = [&](int k, int pix) {
        int n = fdiv(dv.ohw, pix), q = pix - n * OHW;
        return gy[((long long)n * p.k + g * Kg + k) * OHW + q];
    };
    auto lb = [&](int pix, int crs) { return x_col(p, dv, x, g, crs, pix); };
    float* out = partial + (long long)split * p.k * CRS;
    auto st = [&](int k, int crs, float v) { out[(long long)(g * Kg + k) * CRS + crs] = v; };
    int k_begin = split * chunk, k_end = min(NP, k_begin + chunk);
    conv_tile<TM, TF>(Kg, CRS, k_begin, k_end, blockIdx.y * TM, blockIdx.x * TILE_N, false, false, la, lb, st);
}

#define CONV_ENTRIES(SUFFIX, TM, TF)                                                                                       \
    extern "C" __global__ void __launch_bounds__(256, 2)                                                                      \
        conv2d_fwd##SUFFIX(Conv2d p, ConvDivs dv, const float* x, const float* w, const float* bias, float* y) {              \
        conv_fwd<TM, TF>(p, dv, x, w, bias, y);                                                                               \
    }                                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256, 2) conv2d_dgrad##SUFFIX(Conv2d p, ConvDivs dv, const float* gy,          \
                                                                              const float* w, float* gx) {                    \
        conv_dgrad<TM, TF>(p, dv, gy, w, gx);                                                                                 \
    }                                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256, 2) conv2d_wgrad##SUFFIX(Conv2d p, ConvDivs dv, const float* x,           \
                                                                              const float* gy, float* partial, int splits,    \
                                                                              int chunk) {                                    \
        conv_wgrad<TM, TF>(p, dv, x, gy, partial, splits, chunk);                                                             \
    }

CONV_ENTRIES(, 128, false)
CONV_ENTRIES(_m64, 64, false)
CONV_ENTRIES(_tf32, 128, true)
CONV_ENTRIES(_m64_tf32, 64, true)
