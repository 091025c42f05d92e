//! Data the engine reads and makes: images, RSNA-format box labels, truth
//! boxes and image labels for evaluation, and the synthetic chest phantoms
//! with their reports.

pub mod image;
pub mod mimic;
pub mod rsna;
pub mod severity;
pub mod synth;
pub mod truth;
