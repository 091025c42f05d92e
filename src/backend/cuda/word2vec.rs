//! Launcher of cuda/word2vec.cu.

use super::{Cuda, THREADS};
use crate::backend::ops::{Storage, Word2vecOps};
use anyhow::{ensure, Result};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

impl Word2vecOps for Cuda {
    #[allow(clippy::too_many_arguments)]
    fn word2vec_sgns(&self, syn0: &mut CudaSlice<f32>, syn1: &mut CudaSlice<f32>, pairs: &CudaSlice<u32>, table: &CudaSlice<u32>,
                         dim: usize, negative: usize, alpha: f32, seed: u64) -> Result<f64> {
        ensure!(dim <= 256, "word2vec on CUDA supports up to 256 dimensions, got {dim}");
        ensure!(dim > 0 && syn0.len() == syn1.len() && syn0.len() % dim == 0 && !table.is_empty(),
            "word2vec_sgns: syn0 {} and syn1 {} values are not [vocab, {dim}], or the noise table is empty", syn0.len(), syn1.len());
        let n_pairs = pairs.len() / 2;
        let warps = (THREADS / 32) as usize;
        let blocks = n_pairs.div_ceil(warps).max(1);
        let mut block_loss = self.alloc(blocks)?;
        let (np, tl, d, k) = (n_pairs as i32, table.len() as i64, dim as i32, negative as i32);
        let mut launch = self.stream().launch_builder(self.f("word2vec_sgns")?);
        launch.arg(syn0).arg(syn1).arg(pairs).arg(&np).arg(table).arg(&tl).arg(&d).arg(&k).arg(&alpha).arg(&seed).arg(&mut block_loss);
        let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: pair ids index syn0/syn1 rows of `dim` (the caller built both from one vocabulary); block_loss holds one slot per block.
        unsafe { launch.launch(cfg) }?;
        // the loss comes back with the launch: it also paces the host to the GPU
        Ok(self.download(&block_loss)?.iter().map(|&v| v as f64).sum())
    }
}
