//! Line and scatter charts as PNG files (loss curves, 2-D samples), drawn
//! by plotters into a pixel buffer and written by [`crate::grid::write_png`].
//!
//! The font (DejaVu Sans, Bitstream Vera licence, `assets/`) is compiled
//! in, so charts have labels on any machine, with or without system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::grid::write_png;
use crate::{Error, Result};

const WIDTH: usize = 800;
const HEIGHT: usize = 500;

/// One named line or group of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// matplotlib's "tab10" colours, so plots look as Python users expect.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // The font is compiled in and known good; a failure here would
        // only cost the labels, which plotters then skips.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid {
        op: "plot",
        msg: e.to_string(),
    }
}

/// The finite bounds of all points, widened a little (and made non-empty).
fn bounds(series: &[Series]) -> Result<((f64, f64), (f64, f64))> {
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in finite {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        return Err(Error::Invalid {
            op: "plot",
            msg: "no finite points to draw".into(),
        });
    }
    let widen = |lo: f64, hi: f64| {
        let pad = ((hi - lo) * 0.05).max(1e-9 * lo.abs().max(1.0));
        (lo - pad, hi + pad)
    };
    Ok((widen(x0, x1), widen(y0, y1)))
}

/// Draws `series` as lines (`lines`) or dots into an RGB PNG at `path`.
fn chart(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    series: &[Series],
    lines: bool,
) -> Result<()> {
    register_font();
    let ((x0, x1), (y0, y1)) = bounds(series)?;
    let mut pixels = vec![255u8; WIDTH * HEIGHT * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH as u32, HEIGHT as u32))
            .into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(labels.0)
            .y_desc(labels.1)
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let finite = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            let drawn = if lines {
                chart.draw_series(LineSeries::new(finite, colour.stroke_width(2)))
            } else {
                chart.draw_series(finite.map(|p| Circle::new(p, 2, colour.mix(0.6).filled())))
            };
            drawn
                .map_err(plot_err)?
                .label(s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    write_png(path, WIDTH, HEIGHT, 3, &pixels)
}

/// A line chart (e.g. training and held-out loss per epoch), 800x500 PNG.
/// Non-finite points are left out.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    chart(path, title, (x_label, y_label), series, true)
}

/// A scatter plot, one colour per series (e.g. real vs generated points).
pub fn scatter_chart(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    chart(path, title, ("", ""), series, false)
}

/// A line chart of columns of a CSV file with a header row (the
/// trainers' metrics.csv) against its first column: `columns` are
/// (header name, legend label). Rows whose value does not parse (an empty
/// held-out cell) are skipped; columns absent from the file are left out.
pub fn metrics_chart(
    csv: &Path,
    png: &Path,
    title: &str,
    y_label: &str,
    columns: &[(&str, &str)],
) -> Result<()> {
    let text = std::fs::read_to_string(csv).map_err(|source| Error::Io {
        path: csv.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let x_label = header.first().copied().unwrap_or("");
    let series: Vec<Series> = columns
        .iter()
        .filter_map(|&(column, name)| {
            let j = header.iter().position(|h| *h == column)?;
            let points = rows
                .iter()
                .filter_map(|r| Some((r.first()?.parse().ok()?, r.get(j)?.parse().ok()?)))
                .collect();
            Some(Series { name, points })
        })
        .collect();
    line_chart(png, title, x_label, y_label, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width, info.height, buf)
    }

    #[test]
    fn line_chart_draws_each_series_in_its_colour() {
        let dir = std::env::temp_dir().join(format!("deepgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.png");
        let train = Series {
            name: "train",
            points: (1..=10).map(|e| (e as f64, 200.0 / e as f64)).collect(),
        };
        let held = Series {
            name: "held-out",
            points: vec![(1.0, 190.0), (2.0, f64::NAN), (10.0, 25.0)],
        };
        line_chart(&path, "loss", "epoch", "nats", &[train, held]).unwrap();
        let (w, h, px) = read_rgb(&path);
        assert_eq!((w, h), (WIDTH as u32, HEIGHT as u32));
        let has = |c: RGBColor| px.chunks_exact(3).filter(|p| p == &[c.0, c.1, c.2]).count();
        assert!(has(COLOURS[0]) > 100, "first line drawn");
        assert!(has(COLOURS[1]) > 50, "second line drawn");
        // Text: some dark pixels that are neither line colour.
        assert!(
            px.chunks_exact(3)
                .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
                .count()
                > 200
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metrics_chart_reads_named_columns() {
        let dir = std::env::temp_dir().join(format!("deepgen-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("metrics.csv");
        std::fs::write(&csv, "epoch,d_loss,g_loss,held\n1,1.2,0.7,\n2,1.1,0.9,\n").unwrap();
        let png = dir.join("losses.png");
        metrics_chart(
            &csv,
            &png,
            "GAN",
            "loss",
            &[("d_loss", "D"), ("g_loss", "G"), ("nope", "x")],
        )
        .unwrap();
        let (_, _, px) = read_rgb(&png);
        let has = |c: RGBColor| px.chunks_exact(3).filter(|p| p == &[c.0, c.1, c.2]).count();
        assert!(has(COLOURS[0]) > 100 && has(COLOURS[1]) > 100);
        // Only empty cells: no finite points, refused.
        assert!(metrics_chart(&csv, &png, "t", "y", &[("held", "h")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn charts_without_finite_points_are_refused() {
        let path = std::env::temp_dir().join("deepgen-plot-never.png");
        let s = Series {
            name: "x",
            points: vec![(f64::NAN, 1.0)],
        };
        assert!(scatter_chart(&path, "t", &[s]).is_err());
        assert!(!path.exists());
    }
}
