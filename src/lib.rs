//! engine: a weakly supervised pneumonia localizer for chest X-rays, trained
//! from the words of radiology reports, with its own CUDA kernels.
//!
//! Layers: `shape` (index layouts), `backend` (the op trait, CPU reference,
//! CUDA), `autograd` (the tape), `params` / `optim` / `weights` (training
//! state on disk), `info` (what `engine info` prints).

pub mod attention;
pub mod autograd;
pub mod backend;
pub mod data;
pub mod demo;
pub mod detect;
pub mod detector;
pub mod draw;
pub mod info;
pub mod nn;
pub mod optim;
pub mod params;
pub mod progress;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod text;
pub mod weights;

/// The embedded PTX of every `cuda/*.cu` (empty in a build without nvcc).
pub mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

pub use autograd::{Graph, Var};
pub use tensor::Tensor;
pub use backend::{cpu::Cpu, cuda::Cuda, device::Device, Backend};
