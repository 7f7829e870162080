//! PNG charts with plotters: stacked line-chart panels sharing an x axis (training curves) and
//! a heatmap (confusion matrices). Text uses the DejaVu Sans font compiled into the binary, so
//! charts render the same on a headless server with no fonts installed.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One line of a panel.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart panel.
#[derive(Clone, Debug)]
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
}

pub(crate) fn fonts() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok { Ok(()) } else { Err(anyhow!("the built-in chart font could not be loaded")) }
}

pub(crate) fn save(path: &Path, buf: Vec<u8>, w: u32, h: u32) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("chart buffer size"))?;
    crate::atomic::write_with(path, |tmp| img.save_with_format(tmp, image::ImageFormat::Png).map_err(Into::into))
}

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// The colour of class `k`: matplotlib's ten `tab10` colours, then further hues by the golden
/// angle (any number of classes, neighbours distinct).
pub fn class_colour(k: usize) -> RGBColor {
    const TAB10: [RGBColor; 10] = [
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
    if k < TAB10.len() {
        return TAB10[k];
    }
    let hue = (k as f64 * 137.508) % 360.0;
    let lightness = [0.45, 0.6, 0.35][k % 3];
    let HSLColor(h, s, l) = HSLColor(hue / 360.0, 0.65, lightness);
    let (r, g, b) = HSLColor(h, s, l).rgb();
    RGBColor(r, g, b)
}

/// The chart font (DejaVu Sans, compiled in).
fn chart_font() -> Option<ab_glyph::FontRef<'static>> {
    ab_glyph::FontRef::try_from_slice(dejavu::sans::regular()).ok()
}

/// A class name as the PNG charts draw it: at most `max_chars` characters (longer names end
/// in "…"), and, when the name holds a character the chart font (DejaVu Sans: Latin, Greek,
/// Cyrillic, Arabic, Hebrew and symbols; no CJK) cannot draw, its class number `#k` instead
/// of empty boxes. (report.html's tables draw every name with the reader's fonts.)
pub fn label_fallback(name: &str, k: usize, max_chars: usize) -> String {
    use ab_glyph::Font;
    let drawable = chart_font().is_some_and(|f| name.chars().all(|c| c.is_whitespace() || f.glyph_id(c).0 != 0));
    if !drawable || name.is_empty() {
        return format!("#{k}");
    }
    if name.chars().count() <= max_chars {
        return name.to_string();
    }
    let kept: String = name.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// The width in pixels of `text` drawn at `px` pixels in the chart font.
fn text_width(text: &str, px: f32) -> u32 {
    use ab_glyph::{Font, ScaleFont};
    let Some(font) = chart_font() else { return (text.chars().count() as f32 * px * 0.6) as u32 };
    let scaled = font.as_scaled(px);
    text.chars().map(|c| scaled.h_advance(font.glyph_id(c))).sum::<f32>().ceil() as u32
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Draws `panels` stacked vertically under `title`, sharing the x axis `x_label`.
pub fn line_panels(path: &Path, title: &str, x_label: &str, panels: &[Panel]) -> Result<()> {
    fonts()?;
    let (w, ph) = (900u32, 260u32);
    let h = 50 + ph * panels.len().max(1) as u32;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 22).into_font().style(FontStyle::Bold)).map_err(err)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        let (x0, x1) = range(panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0))));
        for (panel, area) in panels.iter().zip(areas) {
            let (y0, y1) = range(panel.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)));
            let mut chart = ChartBuilder::on(&area)
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(panel.y_label.as_str())
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for (i, s) in panel.series.iter().enumerate() {
                let colour = class_colour(i);
                let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).collect();
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            }
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 13))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    save(path, buf, w, h)
}

/// Draws a row-normalized heatmap of `counts[row][col]` with class names on both axes (each
/// cut to fit, see [`label_fallback`]), and each cell's percentage in it up to 20 classes.
pub fn heatmap(path: &Path, title: &str, names: &[String], counts: &[Vec<u64>]) -> Result<()> {
    fonts()?;
    let c = counts.len().max(1);
    let show_names = c <= 30;
    let labels: Vec<String> = (0..c)
        .map(
            |i| if show_names { label_fallback(names.get(i).map_or("", String::as_str), i, 24) } else { i.to_string() },
        )
        .collect();
    // Room for the longest label (the x labels are turned upright), so none is cut.
    let label_room = labels.iter().map(|l| text_width(l, 13.0)).max().unwrap_or(0) + 24;
    let cell = (600 / c as u32).clamp(6, 56);
    let (w, h) = (label_room + 40 + cell * c as u32 + 30, 50 + cell * c as u32 + label_room + 40);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20).into_font().style(FontStyle::Bold)).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(label_room + 20)
            .y_label_area_size(label_room + 20)
            // An integer range includes its end: `0..c - 1` gives the c segments.
            .build_cartesian_2d((0..c - 1).into_segmented(), (0..c - 1).into_segmented())
            .map_err(err)?;
        // Names sit at the centre of their cell (segmented axes); rows are drawn top-down, so
        // the y axis's cell `v` is row `c − 1 − v`.
        // plotters centres an upright x label on its tick, so half of it would run up under
        // the cells; leading spaces as wide as the name put the whole name below the axis.
        let space = text_width(" ", 13.0).max(1);
        let x_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < c => {
                format!("{}{}", " ".repeat(text_width(&labels[*i], 13.0).div_ceil(space) as usize), labels[*i])
            }
            _ => String::new(),
        };
        let y_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < c => labels[c - 1 - i].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(c)
            .y_labels(c)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_label_style(("sans-serif", 13).into_font().transform(FontTransform::Rotate90))
            .y_label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let share = |r: usize, col: usize| {
            let row = &counts[r];
            row[col] as f64 / row.iter().sum::<u64>().max(1) as f64
        };
        chart
            .draw_series((0..c).flat_map(|r| {
                (0..c).map(move |col| {
                    let shade = (255.0 * (1.0 - share(r, col))) as u8;
                    // Row r is drawn top-down: flip to chart coordinates.
                    let y = c - 1 - r;
                    let (x0, y0) = (SegmentValue::Exact(col), SegmentValue::Exact(y));
                    let (x1, y1) = (SegmentValue::Exact(col + 1), SegmentValue::Exact(y + 1));
                    Rectangle::new([(x0, y0), (x1, y1)], RGBColor(shade, shade, 255).filled())
                })
            }))
            .map_err(err)?;
        if c <= 20 {
            for r in 0..c {
                for col in 0..c {
                    let f = share(r, col);
                    let colour = if f > 0.55 { WHITE } else { BLACK };
                    let style = ("sans-serif", (cell as f64 * 0.32).clamp(9.0, 15.0)).into_font().color(&colour).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    );
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{:.0}", 100.0 * f),
                            (SegmentValue::CenterOf(col), SegmentValue::CenterOf(c - 1 - r)),
                            style,
                        )))
                        .map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
    }
    save(path, buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_png_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("curves.png");
        let s = |name: &str, f: fn(f64) -> f64| Series {
            name: name.into(),
            points: (0..50).map(|i| (i as f64, f(i as f64))).collect(),
        };
        line_panels(
            &p,
            "training",
            "step",
            &[
                Panel { y_label: "loss".into(), series: vec![s("loss", |x| 6.0 - x / 20.0)] },
                Panel { y_label: "lr".into(), series: vec![s("lr", |x| (x / 10.0).cos()), s("other", |x| x.sqrt())] },
            ],
        )
        .unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 50 + 2 * 260));
        // Something besides the white background was drawn.
        assert!(img.pixels().filter(|px| px.0 != [255, 255, 255]).count() > 5000);
        let h = d.path().join("confusion.png");
        heatmap(&h, "confusion", &["a".into(), "b".into()], &[vec![9, 1], vec![2, 8]]).unwrap();
        assert!(image::open(&h).is_ok());
        // A long name widens the label room instead of being cut at the edge.
        let long = "a class name long enough to be cut".to_string();
        heatmap(&h, "confusion", &[long, "猫".into()], &[vec![9, 1], vec![2, 8]]).unwrap();
        let wide = image::open(&h).unwrap().width();
        heatmap(&h, "confusion", &["a".into(), "b".into()], &[vec![9, 1], vec![2, 8]]).unwrap();
        assert!(wide > image::open(&h).unwrap().width() + 100);
    }

    #[test]
    fn labels_fit_and_names_the_font_cannot_draw_become_class_numbers() {
        assert_eq!(label_fallback("airplane", 0, 24), "airplane");
        assert_eq!(label_fallback("Ελληνικά кот", 1, 24), "Ελληνικά кот");
        assert_eq!(label_fallback("猫", 3, 24), "#3");
        assert_eq!(label_fallback("a-very-long-class-name-indeed", 2, 10), "a-very-lo…");
        assert_eq!(label_fallback("a-very-long-class-name-indeed", 2, 10).chars().count(), 10);
        assert_eq!(label_fallback("", 4, 10), "#4");
        // Distinct colours for many classes.
        let colours: std::collections::HashSet<_> = (0..100)
            .map(|k| {
                let c = class_colour(k);
                (c.0, c.1, c.2)
            })
            .collect();
        assert_eq!(colours.len(), 100);
    }
}
