//! The CUDA backend's convolutions (cuda/conv.cu): implicit GEMMs on the tile
//! engine. Two things make the loaders cheap: every index division by a
//! shape (r*s, s, oh*ow, ow, h*w, w, stride) is a multiply-high and a shift
//! with a magic number computed here once per launch (`FastDiv`), and a
//! convolution whose GEMM has at most 64 rows (64 output channels forward,
//! 64 input channels for the data gradient) runs on 64-row tiles instead of
//! wasting half of a 128-row tile. With `Cuda::with_tf32` the same kernels
//! run on TF32 tensor cores (cuda/tile_tf32.cuh).

use super::Cuda;
use crate::backend::Conv2d;
use anyhow::{ensure, Result};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

/// Division by a fixed `d` as `(umulhi(n, mul) + n) >> shift`, exact for
/// 0 <= n < 2^31 (Granlund and Montgomery; the form PyTorch's IntDivider
/// uses). Mirrored in cuda/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FastDiv {
    pub d: u32,
    pub mul: u32,
    pub shift: u32,
}

impl FastDiv {
    pub fn new(d: i64) -> Result<Self> {
        ensure!((1..1 << 31).contains(&d), "convolution index divisor {d} is outside 1..2^31 (shape too large)");
        let d = d as u64;
        // 2^shift >= d > 2^(shift-1), so the magic number fits 32 bits
        let shift = 64 - (d - 1).leading_zeros();
        let mul = ((1u64 << 32) * ((1u64 << shift) - d)) / d + 1;
        Ok(FastDiv { d: d as u32, mul: mul as u32, shift })
    }

    /// The device's arithmetic, in 32-bit words as the GPU does it (for the test).
    #[cfg(test)]
    fn div(&self, n: u32) -> u32 {
        let hi = ((n as u64 * self.mul as u64) >> 32) as u32;
        hi.wrapping_add(n) >> self.shift
    }
}

/// The divisors of one convolution's index arithmetic (cuda/conv.cu `ConvDivs`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConvDivs {
    pub rs: FastDiv,
    pub s: FastDiv,
    pub ohw: FastDiv,
    pub ow: FastDiv,
    pub hw: FastDiv,
    pub w: FastDiv,
    pub stride_h: FastDiv,
    pub stride_w: FastDiv,
}

impl ConvDivs {
    pub fn new(p: &Conv2d) -> Result<Self> {
        let f = |a: i32, b: i32| FastDiv::new(a as i64 * b as i64);
        Ok(ConvDivs {
            rs: f(p.r, p.s)?,
            s: f(p.s, 1)?,
            ohw: f(p.oh, p.ow)?,
            ow: f(p.ow, 1)?,
            hw: f(p.h, p.w)?,
            w: f(p.w, 1)?,
            stride_h: f(p.stride_h, 1)?,
            stride_w: f(p.stride_w, 1)?,
        })
    }
}

/// `x` rounded to TF32 as the tensor-core kernels do (cvt.rna.tf32.f32:
/// 10-bit mantissa, to nearest, ties away from zero), for checking them.
pub fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

// SAFETY: plain repr(C) structs of u32, mirrored in cuda/conv.cu.
unsafe impl DeviceRepr for FastDiv {}
unsafe impl DeviceRepr for ConvDivs {}

/// Rows of the tile for a GEMM of `m` rows (the `_m64` kernels take 64).
fn tile_rows(m: usize) -> u32 {
    if m <= 64 {
        64
    } else {
        128
    }
}

fn tile_cfg(cols: usize, rows: usize, tm: u32, z: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (cols.div_ceil(128) as u32, (rows as u32).div_ceil(tm), z as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

impl Cuda {
    pub(super) fn conv2d_gpu(&self, p: &Conv2d, x: &CudaSlice<f32>, w: &CudaSlice<f32>, bias: Option<&CudaSlice<f32>>) -> Result<CudaSlice<f32>> {
        self.check_len("conv2d input", x, p.x_len())?;
        self.check_len("conv2d weight", w, p.w_len())?;
        if let Some(bias) = bias {
            self.check_len("conv2d bias", bias, p.k as usize)?;
        }
        let mut y = self.alloc(p.y_len())?;
        let (kg, pixels) = ((p.k / p.groups) as usize, (p.n * p.oh * p.ow) as usize);
        let tm = tile_rows(kg);
        let f = match (tm, self.tf32()) {
            (64, false) => self.f("conv2d_fwd_m64")?,
            (64, true) => self.f("conv2d_fwd_m64_tf32")?,
            (_, false) => self.f("conv2d_fwd")?,
            (_, true) => self.f("conv2d_fwd_tf32")?,
        };
        let divs = ConvDivs::new(p)?;
        let null: u64 = 0;
        let mut launch = self.stream().launch_builder(f);
        launch.arg(p).arg(&divs).arg(x).arg(w);
        match bias {
            Some(bias) => launch.arg(bias),
            None => launch.arg(&null),
        };
        launch.arg(&mut y);
        // SAFETY: lengths checked against the convolution's shapes; a null bias is allowed.
        unsafe { launch.launch(tile_cfg(pixels, kg, tm, p.groups as usize)) }?;
        Ok(y)
    }

    pub(super) fn conv2d_dgrad_gpu(&self, p: &Conv2d, gy: &CudaSlice<f32>, w: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        self.check_len("conv2d_backward_data gy", gy, p.y_len())?;
        self.check_len("conv2d_backward_data weight", w, p.w_len())?;
        let mut gx = self.alloc(p.x_len())?;
        let (cg, pixels) = ((p.c / p.groups) as usize, (p.n * p.h * p.w) as usize);
        let tm = tile_rows(cg);
        let f = match (tm, self.tf32()) {
            (64, false) => self.f("conv2d_dgrad_m64")?,
            (64, true) => self.f("conv2d_dgrad_m64_tf32")?,
            (_, false) => self.f("conv2d_dgrad")?,
            (_, true) => self.f("conv2d_dgrad_tf32")?,
        };
        let divs = ConvDivs::new(p)?;
        let mut launch = self.stream().launch_builder(f);
        launch.arg(p).arg(&divs).arg(gy).arg(w).arg(&mut gx);
        // SAFETY: lengths checked against the convolution's shapes.
        unsafe { launch.launch(tile_cfg(pixels, cg, tm, p.groups as usize)) }?;
        Ok(gx)
    }

    pub(super) fn conv2d_wgrad_gpu(&self, p: &Conv2d, x: &CudaSlice<f32>, gy: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        self.check_len("conv2d_backward_weight input", x, p.x_len())?;
        self.check_len("conv2d_backward_weight gy", gy, p.y_len())?;
        let (kg, crs) = ((p.k / p.groups) as usize, p.w_len() / p.k as usize);
        let pixels = (p.n * p.oh * p.ow) as usize;
        let tm = tile_rows(kg);
        // Split the pixel reduction so that about 4 blocks per SM are busy.
        let tiles = kg.div_ceil(tm as usize) * crs.div_ceil(128) * p.groups as usize;
        let splits = (528usize.div_ceil(tiles)).clamp(1, pixels.div_ceil(256).max(1)).min(65_535 / p.groups as usize);
        let chunk = pixels.div_ceil(splits).div_ceil(8) * 8;
        let splits = pixels.div_ceil(chunk);
        let mut partial = self.alloc(splits * p.w_len())?;
        let (s32, c32) = (splits as i32, chunk as i32);
        let f = match (tm, self.tf32()) {
            (64, false) => self.f("conv2d_wgrad_m64")?,
            (64, true) => self.f("conv2d_wgrad_m64_tf32")?,
            (_, false) => self.f("conv2d_wgrad")?,
            (_, true) => self.f("conv2d_wgrad_tf32")?,
        };
        let divs = ConvDivs::new(p)?;
        let mut launch = self.stream().launch_builder(f);
        launch.arg(p).arg(&divs).arg(x).arg(gy).arg(&mut partial).arg(&s32).arg(&c32);
        // SAFETY: lengths checked; partial holds splits * w_len elements.
        unsafe { launch.launch(tile_cfg(crs, kg, tm, p.groups as usize * splits)) }?;
        self.sum_partials(&partial, p.w_len(), splits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn fast_division_is_exact() {
        let mut rng = Rng::new(3);
        let mut divisors: Vec<u32> = (1..=4100).collect();
        divisors.extend([7 * 7, 16_384, 65_536, 262_144, 1 << 20, (1 << 30) + 3, (1 << 31) - 1]);
        divisors.extend((0..200).map(|_| 1 + (rng.next_u64() % (1 << 31)) as u32 % ((1 << 31) - 1)));
        for &d in &divisors {
            let f = FastDiv::new(d as i64).unwrap();
            let mut ns: Vec<u32> = vec![0, 1, d - 1, d, d + 1, (1 << 31) - 1, (1 << 31) - 2];
            ns.extend((1..40u32).map(|k| k.saturating_mul(d).min((1 << 31) - 1)));
            ns.extend((1..40u32).map(|k| k.saturating_mul(d).saturating_sub(1).min((1 << 31) - 1)));
            ns.extend((0..100).map(|_| (rng.next_u64() % (1 << 31)) as u32));
            for n in ns {
                assert_eq!(f.div(n), n / d, "{n} / {d} (mul {}, shift {})", f.mul, f.shift);
            }
        }
    }

    #[test]
    fn a_divisor_out_of_range_is_an_error() {
        assert!(FastDiv::new(0).is_err());
        assert!(FastDiv::new(1 << 31).is_err());
        assert_eq!(FastDiv::new(1).unwrap().shift, 0);
        assert_eq!(FastDiv::new((1 << 31) - 1).unwrap().shift, 31);
    }

    #[test]
    fn tf32_rounding_keeps_10_mantissa_bits_ties_away() {
        let ulp = 2f32.powi(-10);
        assert_eq!(round_tf32(1.0 + ulp), 1.0 + ulp);
        assert_eq!(round_tf32(1.0 + ulp / 2.0), 1.0 + ulp, "a tie rounds away from zero");
        assert_eq!(round_tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + ulp / 2.0 - 2f32.powi(-23)), 1.0);
        assert_eq!(round_tf32(1.0 + 0.75 * ulp), 1.0 + ulp);
        assert_eq!(round_tf32(3.0), 3.0);
        assert!(round_tf32(f32::NAN).is_nan());
    }

    #[test]
    fn small_gemms_take_64_row_tiles() {
        assert_eq!(tile_rows(64), 64);
        assert_eq!(tile_rows(65), 128);
        assert_eq!(tile_cfg(300, 140, 128, 2).grid_dim, (3, 2, 2));
        assert_eq!(tile_cfg(300, 64, 64, 1).grid_dim, (3, 1, 1));
    }
}

use crate::backend::ops::ConvOps;

impl ConvOps for Cuda {
    fn conv2d(&self, p: &Conv2d, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>) -> Result<Self::Buf> {
        self.conv2d_gpu(p, x, w, bias)
    }

    fn conv2d_backward_data(&self, p: &Conv2d, gy: &Self::Buf, w: &Self::Buf) -> Result<Self::Buf> {
        self.conv2d_dgrad_gpu(p, gy, w)
    }

    fn conv2d_backward_weight(&self, p: &Conv2d, x: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        self.conv2d_wgrad_gpu(p, x, gy)
    }
}
