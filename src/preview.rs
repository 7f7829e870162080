//! The augmentation preview grid: one row per image, the original then its views (the views
//! epoch 0 of a run with the same seed would train on: `augment.views` full-size ones, then
//! multi-crop's `augment.small_views` small ones), small images enlarged with nearest-neighbour
//! so a person can see the pixels; the original captioned with its class (or file name), the
//! views with their number ("view 2", "small 1").

use image::{Rgb, RgbImage, imageops};
use selfsup_augment::{Augmenter, ImageRef, Scratch, view_rng};

use crate::data::Dataset;

/// Cells are at least this many pixels on a side.
const MIN_CELL: u32 = 128;
const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([32, 32, 32]);

/// Side of a grid cell for views of `size` pixels: an integer multiple reaching [`MIN_CELL`].
pub fn cell_size(size: u32) -> u32 {
    size * MIN_CELL.div_ceil(size).max(1)
}

/// Fits an image into a `cell` × `cell` square, keeping its aspect ratio (nearest-neighbour when
/// enlarging, so pixels stay crisp; triangle filter when shrinking).
pub fn fit(img: &RgbImage, cell: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = f64::from(cell) / f64::from(w.max(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).clamp(1, cell),
        ((f64::from(h) * scale).round() as u32).clamp(1, cell),
    );
    let filter = if scale >= 1.0 { imageops::FilterType::Nearest } else { imageops::FilterType::Triangle };
    let resized = imageops::resize(img, nw, nh, filter);
    let mut out = RgbImage::from_pixel(cell, cell, BACKGROUND);
    imageops::replace(&mut out, &resized, i64::from((cell - nw) / 2), i64::from((cell - nh) / 2));
    out
}

/// What a picture of dataset image `i` is captioned with: its class, else its file name.
pub fn image_caption(ds: &Dataset, i: usize) -> String {
    match ds.label(i).and_then(|l| ds.classes().get(l as usize)) {
        Some(class) => class.clone(),
        None => {
            let name = ds.name(i);
            std::path::Path::new(&name).file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned())
        }
    }
}

/// Builds the grid for dataset images `indices`: `aug`'s views, then `small`'s (multi-crop).
pub fn grid(ds: &Dataset, aug: &Augmenter, small: Option<&Augmenter>, indices: &[usize], seed: u64) -> RgbImage {
    let cfg = aug.config();
    let makers: Vec<(&Augmenter, String)> = (0..cfg.views)
        .map(|v| (aug, format!("view {}", v + 1)))
        .chain(small.into_iter().flat_map(|s| (0..cfg.small_views).map(move |v| (s, format!("small {}", v + 1)))))
        .collect();
    let cell = cell_size(aug.size() as u32);
    let (cols, rows) = (1 + makers.len() as u32, indices.len() as u32);
    let mut out = RgbImage::from_pixel(cols * cell + (cols + 1) * GAP, rows * cell + (rows + 1) * GAP, BACKGROUND);
    let mut scratch = Scratch::default();
    for (r, &i) in indices.iter().enumerate() {
        let (original, views) = ds.with_image(i, |w, h, px| {
            let src = ImageRef::new(w, h, px);
            let original = RgbImage::from_raw(w, h, px.to_vec()).expect("RGB buffer");
            let views: Vec<RgbImage> = makers
                .iter()
                .enumerate()
                .map(|(v, (maker, _))| {
                    let view = maker.view_rgb(src, &mut view_rng(seed, 0, i as u64, v as u8), &mut scratch);
                    let side = maker.size() as u32;
                    RgbImage::from_raw(side, side, view.to_u8()).expect("view buffer")
                })
                .collect();
            (original, views)
        });
        let y = GAP + r as u32 * (cell + GAP);
        let captions: Vec<String> =
            std::iter::once(image_caption(ds, i)).chain(makers.iter().map(|(_, c)| c.clone())).collect();
        for (c, img) in std::iter::once(&original).chain(&views).enumerate() {
            let x = GAP + c as u32 * (cell + GAP);
            imageops::replace(&mut out, &fit(img, cell), i64::from(x), i64::from(y));
            crate::caption::caption(&mut out, x, y, cell, &captions[c]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_integer_multiples_reaching_the_minimum() {
        assert_eq!(cell_size(32), 128);
        assert_eq!(cell_size(28), 140);
        assert_eq!(cell_size(224), 224);
    }

    #[test]
    fn fit_keeps_aspect_and_centres() {
        let img = RgbImage::from_pixel(4, 2, Rgb([255, 0, 0]));
        let f = fit(&img, 8);
        assert_eq!(f.dimensions(), (8, 8));
        assert_eq!(f.get_pixel(0, 1), &BACKGROUND);
        assert_eq!(f.get_pixel(0, 2), &Rgb([255, 0, 0]));
        assert_eq!(f.get_pixel(7, 5), &Rgb([255, 0, 0]));
        assert_eq!(f.get_pixel(7, 6), &BACKGROUND);
    }
}
