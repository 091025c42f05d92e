//! engine: a weakly supervised pneumonia localizer for chest X-rays, trained
//! from the words of radiology reports, with its own CUDA kernels.
//!
//! Layers: `shape` (index layouts), `backend` (the op traits by family, CPU
//! reference, CUDA), `tensor` and `autograd` (the tape), `params` / `optim` /
//! `weights` (training state on disk), `nn` (ResNet-50, RetinaNet),
//! `geometry` (boxes), `localizer` (image to boxes: detector, ROIs, attention
//! model), `folder` (walking images); the commands in `detector`, `text`,
//! `attention`, `demo` and `info`. README "Architecture" has the data path.

pub mod attention;
pub mod autograd;
pub mod backend;
pub mod classifier;
pub mod data;
pub mod demo;
pub mod detector;
pub mod draw;
pub mod eval;
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
pub mod usage;
pub mod text;
pub mod weights;

pub use autograd::{Graph, Var};
pub use tensor::Tensor;
pub use backend::{cpu::Cpu, cuda::Cuda, device::Device, Backend};
