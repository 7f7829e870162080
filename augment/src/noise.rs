//! Random additive Gaussian noise: with probability `p`, every value gets `N(0, std²)` added,
//! then is clamped to `[0, 1]` (as torchvision's `GaussianNoise(clip=True)`).

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// Gaussian noise parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseConfig {
    /// Probability of adding noise, in `[0, 1]`.
    pub p: f64,
    /// Standard deviation in units of the `[0, 1]` intensity range, `>= 0`.
    pub std: f64,
}

/// Adds `N(0, std²)` to every value (Box–Muller, two normals per pair of uniforms), clamped.
pub fn add_noise<R: RngExt + ?Sized>(img: &mut RgbF32, std: f32, rng: &mut R) {
    for pair in img.data.chunks_mut(2) {
        let u1 = 1.0 - rng.random::<f32>(); // (0, 1]: keeps ln finite
        let u2 = rng.random::<f32>();
        let radius = std * (-2.0 * u1.ln()).sqrt();
        let angle = std::f32::consts::TAU * u2;
        let (s, c) = angle.sin_cos();
        pair[0] = (pair[0] + radius * c).clamp(0.0, 1.0);
        if let Some(v) = pair.get_mut(1) {
            *v = (*v + radius * s).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::view_rng;

    #[test]
    fn noise_has_the_requested_moments() {
        // Mid-gray and a small std keep clamping out of the picture.
        let mut img = RgbF32 { width: 100, height: 100, data: vec![0.5; 30_000] };
        add_noise(&mut img, 0.05, &mut view_rng(3, 0, 0, 0));
        let n = img.data.len() as f64;
        let mean = img.data.iter().map(|&v| f64::from(v) - 0.5).sum::<f64>() / n;
        let var = img.data.iter().map(|&v| (f64::from(v) - 0.5 - mean).powi(2)).sum::<f64>() / n;
        // Standard error of the mean is 0.05 / sqrt(30000) ≈ 3e-4.
        assert!(mean.abs() < 1.5e-3, "mean {mean}");
        assert!((var.sqrt() - 0.05).abs() < 0.002, "std {}", var.sqrt());
        // About 68 % within one std.
        let within = img.data.iter().filter(|&&v| (f64::from(v) - 0.5).abs() < 0.05).count() as f64 / n;
        assert!((within - 0.6827).abs() < 0.02, "{within}");
    }

    #[test]
    fn zero_std_is_identity_and_values_stay_clamped() {
        let mut img = RgbF32 { width: 3, height: 1, data: vec![0.0, 0.5, 1.0, 0.2, 0.9, 0.1] };
        let orig = img.clone();
        add_noise(&mut img, 0.0, &mut view_rng(0, 0, 0, 0));
        assert_eq!(img, orig);
        add_noise(&mut img, 5.0, &mut view_rng(0, 0, 0, 0));
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
