//! Random solarization: values at or above `threshold` are inverted (`1 − x`), as torchvision's
//! `RandomSolarize` on float images. Off in the SimCLR presets; BYOL-style recipes use it.

use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// Solarize parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolarizeConfig {
    /// Probability of solarizing, in `[0, 1]`.
    pub p: f64,
    /// Values `>= threshold` are inverted; in `[0, 1]`.
    pub threshold: f64,
}

/// Inverts every value at or above `threshold`.
pub fn solarize(img: &mut RgbF32, threshold: f32) {
    img.data.iter_mut().for_each(|v| {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_only_at_or_above_threshold() {
        let mut img = RgbF32 { width: 2, height: 1, data: vec![0.1, 0.5, 0.49, 0.9, 1.0, 0.0] }; // layout does not matter here
        solarize(&mut img, 0.5);
        let want = [0.1, 0.5, 0.49, 0.1, 0.0, 0.0];
        for (g, w) in img.data.iter().zip(want) {
            assert!((g - w).abs() < 1e-6);
        }
        // Threshold above 1 leaves everything alone.
        let mut img2 = RgbF32 { width: 1, height: 1, data: vec![0.2, 0.7, 1.0] };
        solarize(&mut img2, 1.01);
        assert_eq!(img2.data, vec![0.2, 0.7, 1.0]);
    }
}
