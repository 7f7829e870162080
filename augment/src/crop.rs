//! RandomResizedCrop: the box sampling half (the resampling half is [`crate::resample`]).
//!
//! Follows torchvision's `RandomResizedCrop.get_params`: up to 10 attempts draw an area fraction
//! from `scale` and a log-uniform aspect ratio from `ratio`; the first box that fits the image is
//! placed uniformly at random. If none fits, a centre crop clamped to the ratio range is used.

use rand::RngExt;
use serde::{Deserialize, Serialize};

/// An integer crop box in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

impl CropBox {
    /// The whole image.
    pub fn full(width: u32, height: u32) -> Self {
        Self { top: 0, left: 0, height, width }
    }

    /// This box on an image that is `fx` × `fy` times the size of the one it was drawn on (an
    /// image decoded at a reduced scale): the same part of the picture, in fractional pixels.
    pub fn scaled(&self, fx: f64, fy: f64) -> Region {
        Region {
            left: f64::from(self.left) * fx,
            top: f64::from(self.top) * fy,
            width: f64::from(self.width) * fx,
            height: f64::from(self.height) * fy,
        }
    }
}

/// A crop box in fractional source pixels (a [`CropBox`] carried onto another scale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl From<CropBox> for Region {
    fn from(b: CropBox) -> Self {
        b.scaled(1.0, 1.0)
    }
}

/// RandomResizedCrop parameters (the output size is [`crate::AugmentConfig::size`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropConfig {
    /// Range of the crop's area as a fraction of the image area, `0 < min <= max <= 1`.
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio (width / height), `0 < min <= max`.
    pub ratio: [f64; 2],
}

impl Default for CropConfig {
    fn default() -> Self {
        Self { scale: [0.08, 1.0], ratio: [3.0 / 4.0, 4.0 / 3.0] }
    }
}

impl CropConfig {
    /// Draws a crop box for an image of `width` × `height` pixels.
    pub fn sample<R: RngExt + ?Sized>(&self, width: u32, height: u32, rng: &mut R) -> CropBox {
        let (w_img, h_img) = (f64::from(width), f64::from(height));
        let area = w_img * h_img;
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale[0], self.scale[1]);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            let w = (target_area * aspect).sqrt().round();
            let h = (target_area / aspect).sqrt().round();
            if w > 0.0 && w <= w_img && h > 0.0 && h <= h_img {
                let (w, h) = (w as u32, h as u32);
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropBox { top, left, height: h, width: w };
            }
        }
        self.center_fallback(width, height)
    }

    /// torchvision's fallback: the largest centred box whose ratio is clamped to `ratio`.
    fn center_fallback(&self, width: u32, height: u32) -> CropBox {
        let in_ratio = f64::from(width) / f64::from(height);
        let (w, h) = if in_ratio < self.ratio[0] {
            (width, ((f64::from(width) / self.ratio[0]).round() as u32).clamp(1, height))
        } else if in_ratio > self.ratio[1] {
            (((f64::from(height) * self.ratio[1]).round() as u32).clamp(1, width), height)
        } else {
            (width, height)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }
}

/// Uniform draw in `[lo, hi)`, or `lo` when the range is empty.
pub(crate) fn uniform<R: RngExt + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::view_rng;

    #[test]
    fn boxes_stay_inside_and_respect_bounds_over_many_draws() {
        let cfg = CropConfig::default();
        for (w, h) in [(32u32, 32u32), (224, 160), (500, 375), (7, 40)] {
            let area = f64::from(w * h);
            let mut fallbacks = 0;
            for i in 0..4000 {
                let b = cfg.sample(w, h, &mut view_rng(9, 0, i, 0));
                assert!(b.width >= 1 && b.height >= 1);
                assert!(b.left + b.width <= w && b.top + b.height <= h, "{b:?} outside {w}x{h}");
                if b == cfg.center_fallback(w, h) && b.width * b.height != w * h {
                    fallbacks += 1;
                    continue;
                }
                // Rounding to whole pixels moves area and ratio a little; allow one pixel.
                let a = f64::from(b.width * b.height);
                let lo = (f64::from(b.width) - 0.5).max(0.5) * (f64::from(b.height) - 0.5).max(0.5);
                let hi = (f64::from(b.width) + 0.5) * (f64::from(b.height) + 0.5);
                assert!(hi >= cfg.scale[0] * area && lo <= cfg.scale[1] * area, "area {a} of {area}");
                let r_hi = (f64::from(b.width) + 0.5) / (f64::from(b.height) - 0.5).max(0.5);
                let r_lo = (f64::from(b.width) - 0.5) / (f64::from(b.height) + 0.5);
                assert!(r_hi >= cfg.ratio[0] && r_lo <= cfg.ratio[1], "ratio of {b:?}");
            }
            assert!(fallbacks < 4000, "never found a random box for {w}x{h}");
        }
    }

    #[test]
    fn area_fraction_is_spread_over_the_scale_range() {
        let cfg = CropConfig::default();
        let (mut small, mut large) = (0, 0);
        for i in 0..2000 {
            let b = cfg.sample(256, 256, &mut view_rng(1, 0, i, 0));
            let frac = f64::from(b.width * b.height) / 65536.0;
            small += usize::from(frac < 0.3);
            large += usize::from(frac > 0.7);
        }
        // For a square image most draws fit; expect both ends of U(0.08, 1) well populated.
        assert!(small > 300 && large > 200, "small {small} large {large}");
    }

    #[test]
    fn fallback_is_a_centred_ratio_clamped_box() {
        let cfg = CropConfig { scale: [0.99, 1.0], ratio: [1.0, 1.0] };
        // A very wide image can never hold a square of 99 % of its area: fallback.
        let b = cfg.sample(100, 10, &mut view_rng(0, 0, 0, 0));
        assert_eq!(b, CropBox { top: 0, left: 45, height: 10, width: 10 });
        let b = cfg.sample(10, 100, &mut view_rng(0, 0, 0, 0));
        assert_eq!(b, CropBox { top: 45, left: 0, height: 10, width: 10 });
    }

    #[test]
    fn full_scale_square_ratio_on_square_image_is_whole_image() {
        let cfg = CropConfig { scale: [1.0, 1.0], ratio: [1.0, 1.0] };
        let b = cfg.sample(32, 32, &mut view_rng(0, 0, 0, 0));
        assert_eq!(b, CropBox::full(32, 32));
    }
}
