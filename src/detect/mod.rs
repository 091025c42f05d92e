//! Box geometry of the detector (host side): boxes, the box coder, NMS,
//! anchors, matching, and RetinaNet's post-processing.

pub mod anchors;
pub mod boxes;
pub mod matcher;
pub mod nms;
pub mod postprocess;
