//! Evaluation (SPEC 5): localization metrics with bootstrap intervals, boxes
//! from CAM / Grad-CAM heatmaps, and `engine eval localize` (Table 1).

pub mod heatmap;
pub mod localize;
pub mod metrics;
