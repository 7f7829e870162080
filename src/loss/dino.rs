//! DINO's loss (Caron et al. 2021): the teacher's output of each global view, centred and
//! sharpened, `P_t = softmax((t − c)/τ_t)`, is the target of the student's output of every
//! *other* view, `log P_s = log_softmax(s/τ_s)`: the loss is the mean over those (teacher view,
//! student view) pairs and the images of the cross-entropy `−Σ_k P_t · log P_s`, as lightly's
//! `DINOLoss` computes it. The centre `c` (a moving average of the teacher's outputs,
//! [`updated_center`]) and the temperature keep the teacher from collapsing to one prototype
//! (centring) or to the uniform distribution (sharpening). The teacher sees the two global views;
//! the student sees them and multi-crop's small views too.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use super::contrastive::LossOutput;
use super::cosine::cross_view_stats;

/// The loss of student logits `s` (`[v·n, K]`, view-major: the two global views, then the
/// small ones) against teacher logits `t` (`[2n, K]`, the global views) with centre `center`
/// (`[K]`), at temperatures `student_t` and `teacher_t`.
pub fn dino(s: Tensor<2>, t: Tensor<2>, center: Tensor<1>, n: usize, student_t: f64, teacher_t: f64) -> LossOutput {
    let loss = if crate::cpu_kernels::serve(&s.device()) {
        on_cpu(s.clone(), t.clone(), center, n, student_t, teacher_t)
    } else {
        with_tensor_ops(s.clone(), t.clone(), center, n, student_t, teacher_t)
    };
    let (pos_sim, neg_sim) = cross_view_stats(s.narrow(0, 0, 2 * n), t, n);
    LossOutput { loss, pos_sim, neg_sim }
}

/// The loss through burn's tensor operations (every backend).
fn with_tensor_ops(
    s: Tensor<2>,
    t: Tensor<2>,
    center: Tensor<1>,
    n: usize,
    student_t: f64,
    teacher_t: f64,
) -> Tensor<1> {
    let [rows, k] = s.dims();
    let views = rows / n;
    let targets = softmax((t.detach() - center.reshape([1, k])).div_scalar(teacher_t), 1);
    let log_p = log_softmax(s.div_scalar(student_t), 1);
    let mut total = Tensor::<1>::zeros([1], &log_p.device());
    let mut terms = 0;
    for i in 0..2 {
        let target = targets.clone().narrow(0, i * n, n);
        for j in (0..views).filter(|&j| j != i) {
            total = total + (target.clone() * log_p.clone().narrow(0, j * n, n)).sum().neg().reshape([1]);
            terms += 1;
        }
    }
    total.div_scalar((terms * n) as f64)
}

/// The loss and its gradient from the CPU kernel ([`crate::cpu_kernels::dino_loss`]), joined
/// to the student's graph as `value + Σ s·G − (Σ s·G)ₛₜₒₚ`: that is `value` exactly, and its
/// gradient with respect to `s` is the kernel's `G`.
fn on_cpu(s: Tensor<2>, t: Tensor<2>, center: Tensor<1>, n: usize, student_t: f64, teacher_t: f64) -> Tensor<1> {
    let [rows, k] = s.dims();
    let device = s.device();
    let host = |x: TensorData| x.convert::<f32>().try_into_vec::<f32>().expect("f32 values");
    let (student, teacher) = (host(s.clone().detach().into_data()), host(t.detach().into_data()));
    let center = host(center.detach().into_data());
    let (value, grad) = crate::cpu_kernels::dino_loss::loss_and_grad(&crate::cpu_kernels::dino_loss::DinoLogits {
        student: &student,
        teacher: &teacher,
        center: &center,
        n,
        k,
        student_t: student_t as f32,
        teacher_t: teacher_t as f32,
    });
    let grad = Tensor::<2>::from_data(TensorData::new(grad, [rows, k]), &device);
    let linear = (s * grad).sum().reshape([1]);
    linear.clone() - linear.detach() + Tensor::<1>::from_data(TensorData::new(vec![value as f32], [1]), &device)
}

/// The centre after a step: `m·c + (1 − m)·mean of the teacher's logits` (over both global
/// views and every image of the global batch).
pub fn updated_center(center: Tensor<1>, t: Tensor<2>, momentum: f64) -> Tensor<1> {
    let [_, k] = t.dims();
    center.mul_scalar(momentum) + t.detach().mean_dim(0).reshape([k]).mul_scalar(1.0 - momentum)
}

/// The teacher's temperature in epoch `epoch` (0-based): linear from `warmup` at epoch 0 to
/// `teacher` at epoch `warmup_epochs − 1`, then `teacher` (DINO's and lightly's schedule, a
/// `linspace` over the warm-up epochs).
pub fn teacher_temperature(warmup: f64, teacher: f64, warmup_epochs: u64, epoch: u64) -> f64 {
    match warmup_epochs {
        0 => teacher,
        _ if epoch >= warmup_epochs => teacher,
        1 => warmup,
        w => warmup + (teacher - warmup) * epoch as f64 / (w - 1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent::tests::{random_rows, tensor};

    fn softmax_f64(x: &[f64], t: f64) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|v| ((v - m) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// Naive f64 DINO: the centring and sharpening written out, every (teacher, other student
    /// view) pair.
    fn naive(s: &[Vec<f64>], t: &[Vec<f64>], c: &[f64], n: usize, ts: f64, tt: f64) -> f64 {
        let views = s.len() / n;
        let (mut total, mut terms) = (0.0, 0);
        for i in 0..2 {
            for j in (0..views).filter(|&j| j != i) {
                for b in 0..n {
                    let centred: Vec<f64> = t[i * n + b].iter().zip(c).map(|(x, y)| x - y).collect();
                    let p = softmax_f64(&centred, tt);
                    let q = softmax_f64(&s[j * n + b], ts);
                    total -= p.iter().zip(&q).map(|(a, b)| a * b.ln()).sum::<f64>();
                }
                terms += 1;
            }
        }
        total / (terms * n) as f64
    }

    /// Both paths: the CPU kernel (flex) and burn's operations (kernels off), with and without
    /// small views, on logits far from 0 too (the kernel's softmaxes subtract each row's maximum).
    #[test]
    fn matches_naive_f64_with_and_without_small_views() {
        for kernels in [true, false] {
            crate::cpu_kernels::with_kernels(kernels, matches_naive_f64);
        }
    }

    fn matches_naive_f64() {
        let device = Device::flex();
        for (n, views, k, seed) in [(3, 2, 5, 1), (4, 4, 16, 2), (8, 2, 64, 3), (5, 3, 300, 4)] {
            let (mut s, mut t) = (random_rows(views * n, k, seed), random_rows(2 * n, k, seed + 1));
            if seed == 4 {
                s.iter_mut().flatten().for_each(|v| *v = *v * 3.0 + 20.0);
                t.iter_mut().flatten().for_each(|v| *v = *v * 3.0 + 40.0);
            }
            let c: Vec<f64> = random_rows(1, k, seed + 2).remove(0);
            let ct = Tensor::<1>::from_data(TensorData::new(c.iter().map(|&v| v as f32).collect(), [k]), &device);
            let got =
                f64::from(dino(tensor(&s, &device), tensor(&t, &device), ct, n, 0.1, 0.04).loss.into_scalar::<f32>());
            let want = naive(&s, &t, &c, n, 0.1, 0.04);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "n={n} views={views}: {got} vs {want}");
        }
    }

    /// A teacher as flat as it gets (all logits equal to the centre) gives the uniform target,
    /// whose cross-entropy with any student is `ln K` plus the student's mean log-sum-exp gap;
    /// a student that equals a very sharp teacher's one-hot gives about 0.
    #[test]
    fn closed_forms() {
        for kernels in [true, false] {
            crate::cpu_kernels::with_kernels(kernels, closed_forms_hold);
        }
    }

    fn closed_forms_hold() {
        let device = Device::flex();
        let (n, k) = (4, 8);
        let zeros = vec![vec![0.0; k]; 2 * n];
        let center = Tensor::<1>::zeros([k], &device);
        let got = dino(tensor(&zeros, &device), tensor(&zeros, &device), center.clone(), n, 0.1, 0.04).loss;
        assert!((f64::from(got.into_scalar::<f32>()) - (k as f64).ln()).abs() < 1e-5);
        let one_hot: Vec<Vec<f64>> =
            (0..2 * n).map(|i| (0..k).map(|j| if j == i % n { 10.0 } else { 0.0 }).collect()).collect();
        let got = dino(tensor(&one_hot, &device), tensor(&one_hot, &device), center, n, 0.1, 0.04).loss;
        assert!(f64::from(got.into_scalar::<f32>()) < 1e-6);
    }

    #[test]
    fn student_gradient_matches_finite_differences() {
        for kernels in [true, false] {
            crate::cpu_kernels::with_kernels(kernels, gradient_matches_finite_differences);
        }
    }

    fn gradient_matches_finite_differences() {
        let (n, views, k, h) = (2, 3, 4, 1e-5);
        let s = random_rows(views * n, k, 5);
        let t = random_rows(2 * n, k, 6);
        let c = vec![0.1, -0.2, 0.05, 0.3];
        let device = Device::flex().autodiff();
        let ct = Tensor::<1>::from_data(TensorData::new(c.iter().map(|&v| v as f32).collect(), [k]), &device);
        let x = tensor(&s, &device).require_grad();
        let out = dino(x.clone(), tensor(&t, &device), ct, n, 0.1, 0.07);
        let g: Vec<f32> = x.grad(&out.loss.backward()).unwrap().into_data().try_to_vec().unwrap();
        for i in 0..views * n {
            for j in 0..k {
                let (mut a, mut b) = (s.clone(), s.clone());
                a[i][j] += h;
                b[i][j] -= h;
                let want = (naive(&a, &t, &c, n, 0.1, 0.07) - naive(&b, &t, &c, n, 0.1, 0.07)) / (2.0 * h);
                let got = f64::from(g[i * k + j]);
                assert!((got - want).abs() <= 1e-3 * want.abs().max(0.02), "d/ds[{i}][{j}]: {got} vs {want}");
            }
        }
    }

    #[test]
    fn centre_and_teacher_temperature_follow_their_formulas() {
        let device = Device::flex();
        let t = tensor(&[vec![1.0, 2.0], vec![3.0, -4.0], vec![0.5, 0.0], vec![-1.5, 2.0]], &device);
        let c = Tensor::<1>::from_data(TensorData::new(vec![0.2f32, -0.4], [2]), &device);
        let got: Vec<f32> = updated_center(c, t, 0.9).into_data().try_to_vec().unwrap();
        let want = [0.9 * 0.2 + 0.1 * 0.75, 0.9 * -0.4 + 0.1 * 0.0];
        assert!((f64::from(got[0]) - want[0]).abs() < 1e-6 && (f64::from(got[1]) - want[1]).abs() < 1e-6);
        // numpy.linspace(0.04, 0.07, 30)[e], then 0.07.
        for e in [0u64, 1, 15, 29] {
            let want = 0.04 + (0.07 - 0.04) * e as f64 / 29.0;
            assert!((teacher_temperature(0.04, 0.07, 30, e) - want).abs() < 1e-15);
        }
        assert_eq!(teacher_temperature(0.04, 0.07, 30, 30), 0.07);
        assert_eq!(teacher_temperature(0.04, 0.07, 0, 0), 0.07);
    }
}
