//! The CPU backend: the readable reference every CUDA kernel is checked
//! against. Generic over the element type so that the same code runs in f64
//! for finite-difference gradient checks; the product uses `Cpu<f32>`.
//! Matrix products go to the `gemm` crate (on rayon's threads); element-wise work
//! is split over threads with rayon when it is large.

use crate::shape::AxisLayout;
use super::ops::Storage;
use anyhow::Result;
use num_traits::{Float, FromPrimitive, ToPrimitive};
use rayon::prelude::*;
use std::marker::PhantomData;

// One file per op family, named as its kernel file in cuda/.
mod attention;
mod boxes;
mod conv;
mod elementwise;
mod gemm;
mod layout;
mod losses;
mod norm;
mod optim;
mod pool;
mod reduce;
mod softmax;
mod word2vec;
pub(crate) use layout::check_lines;

/// Element type of the CPU backend (f32 for the product, f64 for checks).
pub trait Real: Float + FromPrimitive + ToPrimitive + Default + Send + Sync + std::fmt::Debug + std::iter::Sum + 'static {
    fn of(v: f64) -> Self {
        Self::from_f64(v).unwrap()
    }
    fn f64(self) -> f64 {
        self.to_f64().unwrap()
    }
}

impl Real for f32 {}
impl Real for f64 {}

#[derive(Clone, Debug, Default)]
pub struct Cpu<T: Real = f32>(PhantomData<T>);

impl<T: Real> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

/// Below this many elements a loop is not worth splitting over threads.
const PAR_MIN: usize = 1 << 15;

fn map<T: Real>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    }
}

fn zip3<T: Real>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    if a.len() >= PAR_MIN {
        (0..a.len()).into_par_iter().map(|i| f(a[i], b[i], c[i])).collect()
    } else {
        (0..a.len()).map(|i| f(a[i], b[i], c[i])).collect()
    }
}

/// The logistic function (the one every module uses).
#[inline]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Index of element `j` of line `(o, k)` in an `[outer, n, inner]` view.
#[inline]
fn at(l: &AxisLayout, o: usize, j: usize, k: usize) -> usize {
    (o * l.n + j) * l.inner + k
}

/// Calls `f(line, o, k)` for each line of the axis view.
fn each_line(l: &AxisLayout, mut f: impl FnMut(usize, usize, usize)) {
    for o in 0..l.outer {
        for k in 0..l.inner {
            f(o * l.inner + k, o, k);
        }
    }
}

impl<T: Real> Storage for Cpu<T> {
    type Buf = Vec<T>;
    type Ids = Vec<u32>;

    fn name(&self) -> String {
        format!("CPU ({} threads, {})", rayon::current_num_threads(), std::any::type_name::<T>())
    }

    fn len(&self, x: &Vec<T>) -> usize {
        x.len()
    }

    fn zeros(&self, n: usize) -> Result<Vec<T>> {
        Ok(vec![T::zero(); n])
    }

    fn fill(&self, n: usize, value: f32) -> Result<Vec<T>> {
        Ok(vec![T::of(value as f64); n])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<T>> {
        Ok(host.iter().map(|&v| T::of(v as f64)).collect())
    }

    fn download(&self, x: &Vec<T>) -> Result<Vec<f32>> {
        Ok(x.iter().map(|v| v.f64() as f32).collect())
    }

    fn copy(&self, x: &Vec<T>) -> Result<Vec<T>> {
        Ok(x.clone())
    }

    fn upload_f64(&self, host: &[f64]) -> Result<Vec<T>> {
        Ok(host.iter().map(|&v| T::of(v)).collect())
    }

    fn download_f64(&self, x: &Vec<T>) -> Result<Vec<f64>> {
        Ok(x.iter().map(|v| v.f64()).collect())
    }

    fn upload_ids(&self, host: &[u32]) -> Result<Vec<u32>> {
        Ok(host.to_vec())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
