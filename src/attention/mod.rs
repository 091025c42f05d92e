//! Stage 3: the cross-attention model that learns from report attributes
//! where the disease is, its training and inference.

pub mod data;
pub mod infer;
pub mod model;
pub mod roi_cache;
pub mod train;
