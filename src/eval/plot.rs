//! Scatter plots of a feature against an expert score (the paper's Fig. 4):
//! the images as points, the least-squares line, r and n in the legend.
//! Drawn with `plotters` into a buffer, saved as PNG with `image`; the
//! labels use DejaVu Sans, embedded (assets/, its licence beside it), so the
//! plot needs no system font.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the embedded font cannot be read")) }
}

/// What one plot shows.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// The score's range (0-8 geographic, 0-6 opacity).
    pub x_max: f64,
    pub points: &'a [(f64, f64)],
    /// Pearson's r of the points, for the legend.
    pub r: f64,
}

/// Draws `s` to a PNG of 800 x 600 pixels at `path`.
pub fn scatter(s: &Scatter, path: &Path) -> Result<()> {
    register_font()?;
    let (w, h) = (800u32, 600u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let e = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let ys: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) } else { (lo - 0.5, lo + 0.5) };
        let mut chart = ChartBuilder::on(&root).caption(s.title, ("sans-serif", 24)).margin(20).x_label_area_size(50).y_label_area_size(70)
            .build_cartesian_2d(0.0..s.x_max, lo..hi).map_err(|x| e(&x))?;
        chart.configure_mesh().x_desc(s.x_label).y_desc(s.y_label).label_style(("sans-serif", 16)).draw().map_err(|x| e(&x))?;
        chart.draw_series(s.points.iter().map(|&(x, y)| Circle::new((x, y), 4, BLUE.mix(0.7).filled()))).map_err(|x| e(&x))?
            .label(format!("images (n = {})", s.points.len())).legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
        let xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
        let (a, b) = super::stats::linear_fit(&xs, &ys);
        chart.draw_series(LineSeries::new([(0.0, b), (s.x_max, a * s.x_max + b)], RED.stroke_width(2))).map_err(|x| e(&x))?
            .label(format!("least squares, r = {:.2}", s.r)).legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart.configure_series_labels().label_font(("sans-serif", 16)).background_style(WHITE.mix(0.9)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft)
            .draw().map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("plot buffer"))?;
    img.save(path).map_err(|x| anyhow!("cannot write {}: {x}", path.display()))
}
