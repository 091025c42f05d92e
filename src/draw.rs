//! PNG overlays for people to look at: a grey image in colour with boxes
//! and short labels (a built-in 5x7 font, so no font file is needed).

use crate::data::image::Gray;
use crate::geometry::boxes::BoxF;
use anyhow::Result;
use image::{Rgb, RgbImage};

pub struct Canvas {
    pub img: RgbImage,
}

pub const RED: [u8; 3] = [230, 40, 40];
pub const GREEN: [u8; 3] = [40, 220, 60];
pub const YELLOW: [u8; 3] = [240, 210, 40];
pub const CYAN: [u8; 3] = [40, 200, 230];

impl Canvas {
    pub fn from_gray(g: &Gray) -> Self {
        let img = RgbImage::from_fn(g.width as u32, g.height as u32, |x, y| {
            let v = (g.data[y as usize * g.width + x as usize].clamp(0.0, 1.0) * 255.0) as u8;
            Rgb([v, v, v])
        });
        Canvas { img }
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }

    /// Outline of a box, `thickness` pixels inward.
    pub fn rect(&mut self, b: &BoxF, c: [u8; 3], thickness: i64) {
        let (x1, y1, x2, y2) = (b[0].round() as i64, b[1].round() as i64, b[2].round() as i64 - 1, b[3].round() as i64 - 1);
        for t in 0..thickness {
            for x in x1..=x2 {
                self.put(x, y1 + t, c);
                self.put(x, y2 - t, c);
            }
            for y in y1..=y2 {
                self.put(x1 + t, y, c);
                self.put(x2 - t, y, c);
            }
        }
    }

    /// Text at (x, y) (top-left), upper-case glyphs scaled by `scale`, on a dark band.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        let w = (s.chars().count() as i64) * 6 * scale;
        for yy in y - scale..y + 8 * scale {
            for xx in x - scale..x + w {
                self.put(xx, yy, [0, 0, 0]);
            }
        }
        for (i, ch) in s.chars().enumerate() {
            let rows = glyph(ch.to_ascii_uppercase());
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.put(x + (i as i64 * 6 + col) * scale + dx, y + r as i64 * scale + dy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A grid of `tiles` (at most `cols` wide), each scaled to fit `side` x `side`.
    pub fn contact_sheet(tiles: &[Canvas], cols: usize, side: u32) -> Canvas {
        let cols = cols.clamp(1, tiles.len().max(1));
        let rows = tiles.len().div_ceil(cols).max(1);
        let mut img = image::RgbImage::new(cols as u32 * side, rows as u32 * side);
        for (i, t) in tiles.iter().enumerate() {
            let small = image::imageops::thumbnail(&t.img, side, side);
            image::imageops::replace(&mut img, &small, ((i % cols) as u32 * side) as i64, ((i / cols) as u32 * side) as i64);
        }
        Canvas { img }
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.img.write_to(&mut out, image::ImageFormat::Png)?;
        crate::weights::write_atomic(path, &out.into_inner())
    }
}

/// 5x7 glyphs, one byte per row (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [14, 17, 17, 31, 17, 17, 17], 'B' => [30, 17, 17, 30, 17, 17, 30], 'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [30, 17, 17, 17, 17, 17, 30], 'E' => [31, 16, 16, 30, 16, 16, 31], 'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15], 'H' => [17, 17, 17, 31, 17, 17, 17], 'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12], 'K' => [17, 18, 20, 24, 20, 18, 17], 'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17], 'N' => [17, 17, 25, 21, 19, 17, 17], 'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16], 'Q' => [14, 17, 17, 17, 21, 18, 13], 'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30], 'T' => [31, 4, 4, 4, 4, 4, 4], 'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4], 'W' => [17, 17, 17, 21, 21, 21, 10], 'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 10, 4, 4, 4, 4], 'Z' => [31, 1, 2, 4, 8, 16, 31],
        '0' => [14, 17, 19, 21, 25, 17, 14], '1' => [4, 12, 4, 4, 4, 4, 14], '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14], '4' => [2, 6, 10, 18, 31, 2, 2], '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14], '7' => [31, 1, 2, 4, 8, 8, 8], '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12], ':' => [0, 12, 12, 0, 12, 12, 0], '-' => [0, 0, 0, 31, 0, 0, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3], '(' => [2, 4, 8, 8, 8, 4, 2], ')' => [8, 4, 2, 2, 2, 4, 8],
        '=' => [0, 0, 31, 0, 31, 0, 0], '/' => [0, 1, 2, 4, 8, 16, 0], ',' => [0, 0, 0, 0, 12, 4, 8],
        _ => [0; 7],
    }
}
