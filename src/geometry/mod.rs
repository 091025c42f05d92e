//! Box geometry on the host (the reference of the backends' box ops in
//! `cuda/boxes.cu`): boxes and the box coder, NMS, anchors, matching.

pub mod anchors;
pub mod boxes;
pub mod matcher;
pub mod nms;
