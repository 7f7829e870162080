//! The learning-rate schedule: the configured rate (for a batch of 256) scaled to the batch,
//! a linear warm-up, then cosine decay to `min_lr_ratio × peak` at the last step.

use serde::{Deserialize, Serialize};

/// How the configured learning rate scales with the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    /// `lr × batch / 256` (Goyal et al.; SimCLR with LARS).
    Linear,
    /// `lr × √(batch / 256)`.
    Sqrt,
    /// The rate as written.
    None,
}

/// A per-step schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub min_lr_ratio: f64,
}

impl Schedule {
    pub fn new(
        lr: f64,
        scaling: LrScaling,
        batch: usize,
        warmup_steps: u64,
        total_steps: u64,
        min_lr_ratio: f64,
    ) -> Self {
        let factor = batch as f64 / 256.0;
        let peak = match scaling {
            LrScaling::Linear => lr * factor,
            LrScaling::Sqrt => lr * factor.sqrt(),
            LrScaling::None => lr,
        };
        Self { peak, warmup_steps: warmup_steps.min(total_steps), total_steps, min_lr_ratio }
    }

    /// The rate for step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = (self.total_steps - self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let min = self.peak * self.min_lr_ratio;
        min + (self.peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rules() {
        assert!((Schedule::new(0.3, LrScaling::Linear, 512, 0, 10, 0.0).peak - 0.6).abs() < 1e-12);
        assert!((Schedule::new(0.3, LrScaling::Sqrt, 1024, 0, 10, 0.0).peak - 0.6).abs() < 1e-12);
        assert!((Schedule::new(0.3, LrScaling::None, 1024, 0, 10, 0.0).peak - 0.3).abs() < 1e-12);
    }

    #[test]
    fn warmup_then_cosine_closed_form() {
        let s = Schedule::new(1.0, LrScaling::None, 256, 10, 110, 0.0);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        // Halfway through the decay: cos(π/2) = 0 → half the peak.
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        // A quarter: 0.5 (1 + cos(π/4)).
        assert!((s.lr(35) - 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
        let floor = Schedule::new(1.0, LrScaling::None, 256, 0, 100, 0.1);
        assert!((floor.lr(100) - 0.1).abs() < 1e-12);
        // Monotone decay after warm-up.
        assert!((10..110).all(|k| s.lr(k + 1) <= s.lr(k) + 1e-15));
    }
}
