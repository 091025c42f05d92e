//! A device buffer with its shape: what the tape, the parameters and the
//! weight files pass around. Below `autograd` and `params`, so neither needs
//! the other for it.

use crate::backend::Backend;
use crate::shape::numel;
use anyhow::{ensure, Result};
use std::sync::Arc;

/// A device buffer with its shape. Cloning shares the buffer.
pub struct Tensor<B: Backend> {
    pub buf: Arc<B::Buf>,
    pub shape: Vec<usize>,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor { buf: self.buf.clone(), shape: self.shape.clone() }
    }
}

impl<B: Backend> Tensor<B> {
    pub fn new(buf: B::Buf, shape: &[usize]) -> Self {
        Tensor { buf: Arc::new(buf), shape: shape.to_vec() }
    }
    pub fn from_host(b: &B, data: &[f32], shape: &[usize]) -> Result<Self> {
        ensure!(data.len() == numel(shape), "{} values do not fill a tensor of shape {shape:?}", data.len());
        Ok(Self::new(b.upload(data)?, shape))
    }
    pub fn from_host_f64(b: &B, data: &[f64], shape: &[usize]) -> Result<Self> {
        ensure!(data.len() == numel(shape), "{} values do not fill a tensor of shape {shape:?}", data.len());
        Ok(Self::new(b.upload_f64(data)?, shape))
    }
    pub fn to_host(&self, b: &B) -> Result<Vec<f32>> {
        b.download(&self.buf)
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
}
