//! Evaluation (SPEC 5): localization metrics with bootstrap intervals, boxes
//! from CAM / Grad-CAM heatmaps, and `engine eval localize` (Table 1);
//! correlation statistics and `engine eval severity` (Table 2).

pub mod heatmap;
pub mod localize;
pub mod metrics;
pub mod plot;
pub mod severity;
pub mod stats;
