//! The supervised box detector as a tool: datasets of boxed images,
//! `engine detector train` and `engine detector infer`, checkpoints.

pub mod checkpoint;
pub mod dataset;
pub mod infer;
pub mod train;
