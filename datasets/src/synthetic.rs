//! A synthetic labelled image set for trying selfsup without a dataset (`selfsup demo`): ten
//! classes of coloured shapes and textures — disc, square, triangle, cross, ring, horizontal
//! stripes, vertical stripes, checkerboard, dots, diagonal stripes — at random positions,
//! scales and colours on random backgrounds, with pixel noise. Horizontal flips (which SimCLR
//! uses) never change a class: diagonal stripes come in both directions.

use std::path::Path;

use image::{Rgb, RgbImage};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The class names, in label order.
pub const CLASSES: [&str; 10] =
    ["disc", "square", "triangle", "cross", "ring", "h-stripes", "v-stripes", "checker", "dots", "diagonal"];

fn colour(rng: &mut Xoshiro256PlusPlus) -> [f32; 3] {
    // A random hue at high saturation, with random brightness.
    let h = rng.random::<f32>() * 6.0;
    let v = 0.55 + 0.45 * rng.random::<f32>();
    let x = 1.0 - ((h % 2.0) - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [r * v, g * v, b * v]
}

/// Draws one image of class `class`.
pub fn draw(class: usize, size: u32, rng: &mut Xoshiro256PlusPlus) -> RgbImage {
    let s = size as f32;
    let fg = colour(rng);
    let bg = {
        let c = colour(rng);
        // At most 0.3 of full brightness, while the foreground's brightest channel is at least
        // 0.55: every shape stands out from its background by at least a quarter of the range.
        let dim = 0.1 + 0.2 * rng.random::<f32>();
        c.map(|v| v * dim)
    };
    let (cx, cy) = (s * (0.3 + 0.4 * rng.random::<f32>()), s * (0.3 + 0.4 * rng.random::<f32>()));
    let r = s * (0.18 + 0.17 * rng.random::<f32>());
    let period = s * (0.12 + 0.12 * rng.random::<f32>());
    let phase = rng.random::<f32>() * period;
    let diag_sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
    let noise = 0.04 + 0.06 * rng.random::<f32>();
    let inside = |x: f32, y: f32| -> bool {
        let (dx, dy) = (x - cx, y - cy);
        let stripe = |t: f32| ((t + phase) / period).floor() as i64 % 2 == 0;
        match class {
            0 => dx * dx + dy * dy < r * r,
            1 => dx.abs() < r * 0.85 && dy.abs() < r * 0.85,
            2 => dy < r * 0.8 && dy > -r && dx.abs() < (dy + r) * 0.6,
            3 => (dx.abs() < r * 0.3 && dy.abs() < r) || (dy.abs() < r * 0.3 && dx.abs() < r),
            4 => {
                let d2 = dx * dx + dy * dy;
                d2 < r * r && d2 > (0.55 * r).powi(2)
            }
            5 => stripe(y),
            6 => stripe(x),
            7 => stripe(x) ^ stripe(y),
            8 => {
                let (mx, my) = ((x + phase) % period - period / 2.0, (y + phase) % period - period / 2.0);
                mx * mx + my * my < (period * 0.3).powi(2)
            }
            _ => stripe((x + diag_sign * y) * std::f32::consts::FRAC_1_SQRT_2),
        }
    };
    let mut img = RgbImage::new(size, size);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let base = if inside(x as f32 + 0.5, y as f32 + 0.5) { fg } else { bg };
        let px = base.map(|v| ((v + noise * (rng.random::<f32>() * 2.0 - 1.0)).clamp(0.0, 1.0) * 255.0).round() as u8);
        *p = Rgb(px);
    }
    img
}

/// Writes `root/train/<class>/NNNN.png` (`train` per class) and `root/test/…` (`test` per
/// class) of `size` × `size` images, reproducibly from `seed`.
pub fn write_shapes(root: &Path, train: usize, test: usize, size: u32, seed: u64) -> std::io::Result<()> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for (split, n) in [("train", train), ("test", test)] {
        for (c, name) in CLASSES.iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir)?;
            for i in 0..n {
                let img = draw(c, size, &mut rng);
                img.save(dir.join(format!("{i:04}.png"))).map_err(std::io::Error::other)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_labelled_folder_that_opens() {
        let d = tempfile::tempdir().unwrap();
        write_shapes(d.path(), 3, 1, 32, 5).unwrap();
        let ds =
            crate::open(&d.path().join("train"), &crate::LoadOptions { verbose: false, ..Default::default() }).unwrap();
        assert_eq!(ds.len(), 30);
        let mut names = CLASSES.map(String::from).to_vec();
        names.sort();
        assert_eq!(ds.classes(), &names[..]);
        // Reproducible from the seed.
        let mut a = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut b = Xoshiro256PlusPlus::seed_from_u64(1);
        assert_eq!(draw(7, 32, &mut a), draw(7, 32, &mut b));
    }

    #[test]
    fn shapes_differ_from_their_background() {
        // The channel with the largest spread separates shape from background: its standard
        // deviation is at least d·sqrt(p(1-p)) for a contrast d ≥ 64 and shape coverage p, well
        // above what pixel noise alone gives (≤ 15).
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for (c, name) in CLASSES.iter().enumerate() {
            let mut weakest = f32::INFINITY;
            for _ in 0..50 {
                let img = draw(c, 32, &mut rng);
                let spread = (0..3)
                    .map(|ch| {
                        let v: Vec<f32> = img.pixels().map(|p| f32::from(p.0[ch])).collect();
                        let mean = v.iter().sum::<f32>() / v.len() as f32;
                        (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
                    })
                    .fold(0.0, f32::max);
                weakest = weakest.min(spread);
            }
            assert!(weakest > 25.0, "class {name} has too little contrast ({weakest:.1})");
        }
    }
}
