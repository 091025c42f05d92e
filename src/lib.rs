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
pub mod detector;
pub mod draw;
pub mod folder;
pub mod geometry;
pub mod info;
pub mod localizer;
pub mod nn;
pub mod optim;
pub mod params;
pub mod progress;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod text;
pub mod weights;

pub use autograd::{Graph, Var};
pub use tensor::Tensor;
pub use backend::{cpu::Cpu, cuda::Cuda, device::Device, Backend};
