//! The report's embedding map: features in 2-D by t-SNE (van der Maaten & Hinton 2008;
//! Barnes-Hut, θ = 0.5, from the `bhtsne` crate), one panel per network side by side, points
//! coloured by class with a legend.
//!
//! Features are L2-normalized first (the geometry k-NN and retrieval use). The map is seeded:
//! the starting layout is drawn from `seed` (not bhtsne's unseeded default) and the fit runs on
//! one thread (bhtsne's parallel sums would make the last bits depend on the thread count), so
//! a report rebuilds the same picture.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;
use rand::{RngExt, SeedableRng};

use super::plots::{class_colour, fonts, label_fallback};

/// Points of one panel: `[x, y]` per image.
pub type Layout = Vec<[f32; 2]>;

/// t-SNE of `n` rows of `dim` features (`values`, row-major) into 2-D, seeded.
pub fn tsne(values: &[f32], n: usize, dim: usize, seed: u64) -> Result<Layout> {
    if n < 5 {
        return Err(anyhow!("an embedding map needs at least 5 images, got {n}"));
    }
    let rows: Vec<Vec<f32>> = values
        .chunks_exact(dim)
        .map(|r| {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / norm).collect()
        })
        .collect();
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    // bhtsne needs n − 1 ≥ 3 · perplexity; 30 is the usual choice for a few thousand points.
    let perplexity = 30f32.min((n as f32 - 1.0) / 3.0 - 0.5).max(1.0);
    // N(0, 10⁻⁴) per coordinate, as t-SNE's reference implementation starts.
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    let start: Vec<f32> = (0..2 * n)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
            1e-2 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let flat = pool.install(|| {
        let mut t: bhtsne::tSNE<f32, &[f32], 2> = bhtsne::tSNE::new(&refs);
        t.perplexity(perplexity)
            .epochs(750)
            .initial_embedding(start)
            .barnes_hut(0.5, |a, b| a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt());
        t.embedding()
    });
    Ok(flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
}

/// The share of points whose `k` nearest other points in the map mostly share their class: a
/// number for "the classes separate" (1 when every class is its own island).
pub fn neighbour_agreement(points: &[[f32; 2]], labels: &[u32], k: usize) -> f64 {
    let n = points.len();
    let agree = (0..n)
        .filter(|&i| {
            let mut d: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ((points[i][0] - points[j][0]).powi(2) + (points[i][1] - points[j][1]).powi(2), j))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            let same = d.iter().take(k).filter(|(_, j)| labels[*j] == labels[i]).count();
            2 * same > k.min(n - 1)
        })
        .count();
    agree as f64 / n.max(1) as f64
}

/// One panel of the picture.
pub struct MapPanel<'a> {
    pub title: String,
    pub points: &'a [[f32; 2]],
    pub labels: &'a [u32],
}

/// Draws `panels` side by side into `path` (PNG), with one legend of `classes` (names drawn as
/// [`label_fallback`] says) below them.
pub fn draw(path: &Path, panels: &[MapPanel], classes: &[String]) -> Result<()> {
    fonts()?;
    let side = 440u32;
    let columns = 4usize;
    let legend_rows = classes.len().div_ceil(columns) as u32;
    let (w, h) = (side * panels.len().max(1) as u32, side + 16 + 22 * legend_rows);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(super::plots::err)?;
        let (maps, legend) = root.split_vertically(side);
        for (panel, area) in panels.iter().zip(maps.split_evenly((1, panels.len().max(1)))) {
            let range = |axis: usize| {
                let (lo, hi) = panel
                    .points
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| (a.min(p[axis]), b.max(p[axis])));
                let pad = ((hi - lo) * 0.04).max(1e-3);
                (lo - pad)..(hi + pad)
            };
            let mut chart = ChartBuilder::on(&area)
                .margin(10)
                .caption(&panel.title, ("sans-serif", 17).into_font().style(FontStyle::Bold))
                .build_cartesian_2d(range(0), range(1))
                .map_err(super::plots::err)?;
            chart.configure_mesh().disable_mesh().disable_axes().draw().map_err(super::plots::err)?;
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .zip(panel.labels)
                        .map(|(p, &l)| Circle::new((p[0], p[1]), 2, class_colour(l as usize).filled())),
                )
                .map_err(super::plots::err)?;
        }
        let cell = w / columns as u32;
        for (k, name) in classes.iter().enumerate() {
            let (x, y) = ((k % columns) as i32 * cell as i32 + 14, (k / columns) as i32 * 22 + 8);
            legend.draw(&Circle::new((x, y + 7), 5, class_colour(k).filled())).map_err(super::plots::err)?;
            legend
                .draw(&Text::new(label_fallback(name, k, 30), (x + 12, y), ("sans-serif", 14)))
                .map_err(super::plots::err)?;
        }
        root.present().map_err(super::plots::err)?;
    }
    super::plots::save(path, buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four tight clusters far apart in 64-d, 30 points each.
    fn clusters() -> (Vec<f32>, Vec<u32>) {
        let (dim, per) = (64, 30);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for c in 0..4u32 {
            for _ in 0..per {
                values
                    .extend((0..dim).map(|j| if j == c as usize * 9 { 5.0 } else { 0.0 } + rng.random::<f32>() * 0.3));
                labels.push(c);
            }
        }
        (values, labels)
    }

    #[test]
    fn separated_clusters_stay_apart_and_a_seed_gives_the_same_map() {
        let (values, labels) = clusters();
        let n = labels.len();
        let a = tsne(&values, n, 64, 7).unwrap();
        assert_eq!(a.len(), n);
        assert_eq!(neighbour_agreement(&a, &labels, 5), 1.0, "each cluster its own island");
        // The same seed, from a pool of another size: the same bits.
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| tsne(&values, n, 64, 7))
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, tsne(&values, n, 64, 8).unwrap(), "another seed, another start");
        // Labels that ignore the clusters do not agree with the map.
        let shuffled: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
        assert!(neighbour_agreement(&a, &shuffled, 5) < 0.5);
        assert!(tsne(&values[..4 * 64], 4, 64, 1).is_err());
    }

    #[test]
    fn the_map_draws_with_a_legend_of_any_class_names() {
        let (values, labels) = clusters();
        let a = tsne(&values, labels.len(), 64, 1).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map.png");
        let names: Vec<String> = ["cat", "猫", "a very long class name that will not fit in its legend cell", "dog"]
            .map(String::from)
            .to_vec();
        let panels = [
            MapPanel { title: "trained".into(), points: &a, labels: &labels },
            MapPanel { title: "random init".into(), points: &a, labels: &labels },
        ];
        draw(&p, &panels, &names).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.width(), 880);
        // Every class's colour is on the picture.
        for c in 0..4 {
            let RGBColor(r, g, b) = class_colour(c);
            assert!(img.pixels().any(|px| px.0 == [r, g, b]), "class {c}'s colour");
        }
    }
}
