//! Random horizontal flip.

use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// Horizontal flip with probability `p`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlipConfig {
    /// Probability of flipping, in `[0, 1]`.
    pub p: f64,
}

/// Mirrors the image left-right in place.
pub fn flip_horizontal(img: &mut RgbF32) {
    let w = img.width;
    img.data.chunks_exact_mut(w).for_each(<[f32]>::reverse);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: usize, h: usize) -> RgbF32 {
        let mut img = RgbF32::new(w, h);
        img.data.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32 * 0.37).fract());
        img
    }

    #[test]
    fn flip_twice_is_identity() {
        for (w, h) in [(1, 1), (2, 3), (7, 5), (32, 32)] {
            let orig = sample(w, h);
            let mut img = orig.clone();
            flip_horizontal(&mut img);
            flip_horizontal(&mut img);
            assert_eq!(img, orig);
        }
    }

    #[test]
    fn flip_mirrors_each_pixel() {
        let orig = sample(7, 4);
        let mut img = orig.clone();
        flip_horizontal(&mut img);
        for y in 0..4 {
            for x in 0..7 {
                assert_eq!(img.pixel(x, y), orig.pixel(6 - x, y));
            }
        }
    }
}
