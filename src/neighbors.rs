//! Retrieval pictures: rows of a query image followed by its nearest neighbours (cosine
//! similarity of backbone features), each image fitted into a square cell.

use image::{Rgb, RgbImage, imageops};

use crate::preview::fit;

use crate::data::Dataset;
use crate::eval::collapse::Embeddings;

const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([32, 32, 32]);
/// A thin frame marks the query.
const QUERY_FRAME: Rgb<u8> = Rgb([230, 160, 30]);

/// The `k` nearest rows of `bank` to `query` (cosine), best first, skipping `exclude`.
pub fn nearest(bank: &Embeddings, query: &[f32], k: usize, exclude: Option<usize>) -> Vec<(usize, f64)> {
    let rows = bank.normalized();
    let qn = query.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt().max(1e-12);
    let mut sims: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != exclude)
        .map(|(i, r)| (i, r.iter().zip(query).map(|(a, &b)| a * f64::from(b)).sum::<f64>() / qn))
        .collect();
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims.truncate(k);
    sims
}

/// One row per `(query image, neighbour indices into ds)`.
pub fn grid(ds: &Dataset, rows: &[(RgbImage, Vec<usize>)], cell: u32) -> RgbImage {
    let cols = 1 + rows.iter().map(|r| r.1.len()).max().unwrap_or(0) as u32;
    let mut out = RgbImage::from_pixel(
        cols * cell + (cols + 1) * GAP,
        rows.len() as u32 * cell + (rows.len() as u32 + 1) * GAP,
        BACKGROUND,
    );
    for (r, (query, nbs)) in rows.iter().enumerate() {
        let y = GAP + r as u32 * (cell + GAP);
        let mut q = fit(query, cell);
        for x in 0..cell {
            for t in 0..2 {
                q.put_pixel(x, t, QUERY_FRAME);
                q.put_pixel(x, cell - 1 - t, QUERY_FRAME);
                q.put_pixel(t, x, QUERY_FRAME);
                q.put_pixel(cell - 1 - t, x, QUERY_FRAME);
            }
        }
        imageops::replace(&mut out, &q, i64::from(GAP), i64::from(y));
        crate::caption::caption(&mut out, GAP, y, cell, "query");
        for (c, &i) in nbs.iter().enumerate() {
            let img = ds.with_image(i, |w, h, px| RgbImage::from_raw(w, h, px.to_vec()).expect("RGB buffer"));
            let x = GAP + (c as u32 + 1) * (cell + GAP);
            imageops::replace(&mut out, &fit(&img, cell), i64::from(x), i64::from(y));
            crate::caption::caption(&mut out, x, y, cell, &crate::preview::image_caption(ds, i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_is_by_cosine_and_excludes() {
        let bank = Embeddings::new(4, 2, vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.1, -1.0, 0.0]);
        let nb = nearest(&bank, &[1.0, 0.0], 3, None);
        assert_eq!(nb.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!((nb[0].1 - 1.0).abs() < 1e-12);
        let nb = nearest(&bank, &[1.0, 0.0], 2, Some(0));
        assert_eq!(nb[0].0, 2);
    }
}

/// Writes `img` as a PNG at `path` (atomically) with `text` as its tEXt metadata (what produced
/// the picture: the model, which of its networks, the query).
pub fn save_png(path: &std::path::Path, img: &RgbImage, text: &[(&str, String)]) -> anyhow::Result<()> {
    crate::atomic::write_with(path, |tmp| {
        let file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        let mut enc = png::Encoder::new(file, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            enc.add_text_chunk(k.to_string(), v.clone())?;
        }
        let mut w = enc.write_header()?;
        w.write_image_data(img.as_raw())?;
        w.finish()?;
        Ok(())
    })
}
