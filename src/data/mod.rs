//! Data the engine reads and makes: images, RSNA-format box labels, and the
//! synthetic chest phantoms with their reports.

pub mod image;
pub mod rsna;
pub mod synth;
