//! The slowly moving teacher of MoCo, MoCo v3, BYOL and DINO: a copy of the student (backbone,
//! projection head and, for DINO, the prototypes; never the predictor) whose parameters follow
//! the student's by an exponential moving average, `ξ ← m·ξ + (1 − m)·θ`, after every optimizer
//! step. Its batch-norm running statistics are its own, updated by its training-mode forward
//! passes (as lightly's and solo-learn's momentum encoders do: only parameters are averaged).
//!
//! The momentum follows BYOL's cosine schedule (Grill et al. 2020, §3.2) from `method.momentum`
//! at the first step to 1 at the last, `m_k = 1 − (1 − m₀)·(cos(πk/K) + 1)/2`, or stays at
//! `method.momentum` (`method.momentum_schedule = "constant"`).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use super::MomentumSchedule;
use crate::model::Encoder;

/// The teacher's momentum after step `step` (0-based) of `total`.
pub fn momentum_at(base: f64, schedule: MomentumSchedule, step: u64, total: u64) -> f64 {
    match schedule {
        MomentumSchedule::Constant => base,
        MomentumSchedule::Cosine => {
            let progress = if total == 0 { 0.0 } else { (step as f64 / total as f64).min(1.0) };
            1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
        }
    }
}

/// The teacher as a copy of `student` without autodiff and without its predictor (fresh
/// running-statistic buffers: `valid` builds new ones, so the two never share them).
pub fn copy(student: &Encoder) -> Encoder {
    let mut teacher = student.valid();
    teacher.predictor = None;
    teacher
}

/// The student's trained parameters by module path, without autodiff, flattened.
struct Collect {
    path: Vec<String>,
    out: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        if crate::named_tensors::is_running_stat(&name) {
            return;
        }
        let t = param.val().inner();
        let n = t.shape().num_elements();
        self.out.insert(name, t.reshape([n]));
    }
}

struct Average {
    path: Vec<String>,
    student: HashMap<String, Tensor<1>>,
    momentum: f64,
    missing: Vec<String>,
}

impl ModuleMapper for Average {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let (id, tensor, mapper) = param.consume();
        if crate::named_tensors::is_running_stat(&name) {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let Some(s) = self.student.remove(&name) else {
            self.missing.push(name);
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let m = self.momentum;
        let new = tensor.mul_scalar(m).add(s.reshape(shape).mul_scalar(1.0 - m));
        Param::from_mapped_value(id, new, mapper)
    }
}

/// `teacher ← m·teacher + (1 − m)·student`, parameter by parameter (matched by module path;
/// running statistics untouched).
pub fn update(teacher: Encoder, student: &Encoder, momentum: f64) -> Encoder {
    if momentum >= 1.0 {
        return teacher;
    }
    let mut c = Collect { path: Vec::new(), out: HashMap::new() };
    student.visit(&mut c);
    let mut a = Average { path: Vec::new(), student: c.out, momentum, missing: Vec::new() };
    let teacher = teacher.map(&mut a);
    debug_assert!(a.missing.is_empty(), "teacher parameters without a student twin: {:?}", a.missing);
    teacher
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::named_tensors::{collect, is_running_stat};

    /// The cosine schedule starts at m₀, ends at 1, passes (1 + m₀)/2 half way, and never
    /// decreases; the constant one stays at m₀.
    #[test]
    fn the_cosine_momentum_schedule_goes_from_the_base_to_one() {
        let (m0, total) = (0.99, 1000);
        let at = |k| momentum_at(m0, MomentumSchedule::Cosine, k, total);
        assert!((at(0) - m0).abs() < 1e-15);
        assert!((at(total) - 1.0).abs() < 1e-15);
        assert!((at(total / 2) - (1.0 + m0) / 2.0).abs() < 1e-12);
        // Against the formula evaluated independently at a few points.
        for k in [1u64, 137, 999] {
            let want = 1.0 - (1.0 - m0) * (1.0 + (std::f64::consts::PI * k as f64 / 1000.0).cos()) / 2.0;
            assert!((at(k) - want).abs() < 1e-15, "step {k}");
        }
        assert!((0..total).all(|k| at(k + 1) >= at(k)));
        assert_eq!(momentum_at(m0, MomentumSchedule::Constant, 500, total), m0);
    }

    /// One EMA step against the direct computation on the host: every parameter is
    /// `m·ξ + (1 − m)·θ`; running statistics stay the teacher's; the predictor is not copied.
    #[test]
    fn the_update_is_the_moving_average_of_every_parameter() {
        let mut cfg = Config::default();
        cfg.model.head.hidden_dim = 16;
        cfg.model.head.out_dim = 8;
        cfg.method = super::super::MethodConfig::preset(super::super::MethodKind::Byol);
        cfg.method.predictor.hidden_dim = 12;
        let device = Device::flex().autodiff();
        device.seed(5);
        let teacher_start = cfg.encoder(&device);
        let student = cfg.encoder(&device);
        let teacher = copy(&teacher_start);
        assert!(teacher.predictor.is_none() && student.predictor.is_some());
        let before = collect(&teacher);
        let theta = collect(&student);
        let m = 0.9;
        let after = collect(&update(teacher, &student, m));
        assert_eq!(before.len(), after.len());
        let mut averaged = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a.name, b.name);
            if is_running_stat(&a.name) {
                assert_eq!(a.values, b.values, "{}: running statistics are the teacher's own", a.name);
                continue;
            }
            let s = theta.iter().find(|t| t.name == a.name).unwrap();
            for ((x, y), z) in a.values.iter().zip(&b.values).zip(&s.values) {
                let want = m * f64::from(*y) + (1.0 - m) * f64::from(*z);
                assert!((f64::from(*x) - want).abs() <= 1e-6 * want.abs().max(1.0), "{}", a.name);
            }
            averaged += 1;
        }
        assert!(averaged > 4, "{averaged} parameters averaged");
    }
}
