//! Reading chest X-rays (PNG and JPEG in 8/16-bit grey, RGB or RGBA, and
//! DICOM including the JPEG-baseline transfer syntax; MONOCHROME1 is
//! inverted) into grey [0, 1], and turning them into network inputs: square
//! resize (bilinear) with boxes scaled alike, 3 channels, ImageNet mean/std,
//! horizontal flip.

use crate::geometry::boxes::BoxF;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A grey image in [0, 1], row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// File extensions the engine reads.
pub const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "dcm", "dicom"];

fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() > 132 && &bytes[128..132] == b"DICM"
}

/// Reads a PNG, JPEG or DICOM file (format from its bytes, not its name).
pub fn load(path: &Path) -> Result<Gray> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if is_dicom(&bytes) {
        load_dicom(path).with_context(|| format!("{}: cannot decode DICOM", path.display()))
    } else {
        decode(&bytes).with_context(|| format!("{}: cannot decode image", path.display()))
    }
}

/// Loads an image, or (unless `strict`) warns, records it in `skipped` and
/// returns `None`: the rule every command follows for unreadable files.
pub fn load_or_skip(path: &Path, strict: bool, skipped: &mut Vec<String>) -> Result<Option<Gray>> {
    match load(path) {
        Ok(img) => Ok(Some(img)),
        Err(e) if !strict => {
            eprintln!("engine: warning: skipped {}: {e:#}", path.display());
            skipped.push(path.display().to_string());
            Ok(None)
        }
        Err(e) => Err(e.context("--strict")),
    }
}

/// PNG or JPEG bytes to grey (ITU-R 601 luma for colour, alpha ignored).
pub fn decode(bytes: &[u8]) -> Result<Gray> {
    let img = image::load_from_memory(bytes)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data: Vec<f32> = match img {
        image::DynamicImage::ImageLuma16(g) => g.into_raw().into_iter().map(|v| v as f32 / 65535.0).collect(),
        image::DynamicImage::ImageLumaA16(g) => g.into_raw().chunks(2).map(|p| p[0] as f32 / 65535.0).collect(),
        image::DynamicImage::ImageRgb16(_) | image::DynamicImage::ImageRgba16(_) => img
            .to_rgb16()
            .pixels()
            .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 65535.0)
            .collect(),
        image::DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(|v| v as f32 / 255.0).collect(),
        other => other.to_rgb8().pixels().map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0).collect(),
    };
    if width == 0 || height == 0 {
        bail!("empty image");
    }
    Ok(Gray { width, height, data })
}

fn load_dicom(path: &Path) -> Result<Gray> {
    use dicom_pixeldata::PixelDecoder;
    let obj = dicom_object::open_file(path)?;
    if obj.element(dicom_object::Tag(0x7FE0, 0x0010)).is_err() {
        bail!("no pixel data (7FE0,0010)");
    }
    let px = obj.decode_pixel_data_frame(0)?;
    let (width, height) = (px.columns() as usize, px.rows() as usize);
    let spp = px.samples_per_pixel() as usize;
    let raw: Vec<f32> = px.to_vec_frame::<f32>(0)?;
    let mut data: Vec<f32> = if spp == 1 {
        raw
    } else {
        raw.chunks(spp).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect()
    };
    if data.len() != width * height || data.is_empty() {
        bail!("pixel data has {} values for {width}x{height}", data.len());
    }
    // stored values to [0, 1] by the image's own range
    let (lo, hi) = data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let invert = px.photometric_interpretation().to_string().trim() == "MONOCHROME1";
    for v in &mut data {
        *v = (*v - lo) / span;
        if invert {
            *v = 1.0 - *v;
        }
    }
    Ok(Gray { width, height, data })
}

impl Gray {
    /// Bilinear resize (half-pixel centres, as torch's align_corners=False).
    pub fn resize(&self, width: usize, height: usize) -> Gray {
        let (sx, sy) = (self.width as f32 / width as f32, self.height as f32 / height as f32);
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
            let y0 = (fy as usize).min(self.height - 1);
            let y1 = (y0 + 1).min(self.height - 1);
            let wy = fy - y0 as f32;
            for x in 0..width {
                let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
                let x0 = (fx as usize).min(self.width - 1);
                let x1 = (x0 + 1).min(self.width - 1);
                let wx = fx - x0 as f32;
                let p = |yy: usize, xx: usize| self.data[yy * self.width + xx];
                data.push((1.0 - wy) * ((1.0 - wx) * p(y0, x0) + wx * p(y0, x1)) + wy * ((1.0 - wx) * p(y1, x0) + wx * p(y1, x1)));
            }
        }
        Gray { width, height, data }
    }

    pub fn hflip(&self) -> Gray {
        let mut data = self.data.clone();
        for row in data.chunks_mut(self.width) {
            row.reverse();
        }
        Gray { data, ..*self }
    }

    /// 8-bit PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let buf: Vec<u8> = self.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        let img = image::GrayImage::from_raw(self.width as u32, self.height as u32, buf).context("image size")?;
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }
}

/// One network input: `[3, size, size]` normalized, and the boxes scaled to it.
pub fn to_input(img: &Gray, size: usize, boxes: &[BoxF], flip: bool) -> (Vec<f32>, Vec<BoxF>) {
    let mut r = img.resize(size, size);
    let (sx, sy) = (size as f32 / img.width as f32, size as f32 / img.height as f32);
    let mut b: Vec<BoxF> = boxes.iter().map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]).collect();
    if flip {
        r = r.hflip();
        b = b.iter().map(|b| [size as f32 - b[2], b[1], size as f32 - b[0], b[3]]).collect();
    }
    let mut out = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        out.extend(r.data.iter().map(|&v| (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]));
    }
    (out, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_a_constant_image_and_flip_mirrors_boxes() {
        let g = Gray { width: 4, height: 2, data: vec![0.5; 8] };
        assert!(g.resize(7, 3).data.iter().all(|&v| (v - 0.5).abs() < 1e-6));
        let (x, b) = to_input(&g, 8, &[[0.0, 0.0, 1.0, 1.0]], true);
        assert_eq!(x.len(), 3 * 64);
        assert_eq!(b[0], [6.0, 0.0, 8.0, 4.0]);
        assert!((x[0] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
    }

    #[test]
    fn png_round_trip() {
        let g = Gray { width: 3, height: 2, data: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0] };
        let back = decode(&g.to_png().unwrap()).unwrap();
        assert_eq!((back.width, back.height), (3, 2));
        assert!(back.data.iter().zip(&g.data).all(|(a, b)| (a - b).abs() < 1.0 / 255.0));
    }
}
