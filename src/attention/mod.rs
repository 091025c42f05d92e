//! Stage 3: training the cross-attention model (`nn::attention`) on the
//! cached ROIs and the report attributes, and `engine infer`.

pub mod data;
pub mod infer;
pub mod roi_cache;
pub mod train;
