//! Random grayscale conversion with ITU-R BT.601 luma weights.

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// The BT.601 luma weights for R, G and B.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Grayscale with probability `p` (the three channels all become the luma).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrayscaleConfig {
    /// Probability of converting, in `[0, 1]`.
    pub p: f64,
}

/// The luma of one pixel.
#[inline]
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
}

#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn gray_planes(r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = luma(*r, *g, *b);
        *r = y;
        *g = y;
        *b = y;
    }
}

/// Replaces every pixel by its luma, replicated to R = G = B.
pub fn to_grayscale(img: &mut RgbF32) {
    let [r, g, b] = img.planes_mut();
    gray_planes(r, g, b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_equal_channels_with_601_weights() {
        let mut img = RgbF32::from_interleaved(3, 1, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 0.4, 0.8]);
        to_grayscale(&mut img);
        let want = [0.299, 0.587, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.8];
        for (x, w) in want.iter().enumerate() {
            let [r, g, b] = img.pixel(x, 0);
            assert!(r == g && g == b);
            assert!((f64::from(r) - w).abs() < 1e-6, "{r} vs {w}");
        }
    }

    #[test]
    fn white_stays_white_and_black_stays_black() {
        let mut img = RgbF32::from_interleaved(2, 1, &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        to_grayscale(&mut img);
        assert!(img.pixel(0, 0).iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert_eq!(img.pixel(1, 0), [0.0; 3]);
    }
}
