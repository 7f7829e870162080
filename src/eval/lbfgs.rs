//! Limited-memory BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line
//! search, for smooth convex problems such as the linear probe's regularized cross-entropy.

/// Why minimization stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The gradient's max-norm fell below the tolerance.
    Converged,
    /// The iteration limit was reached.
    MaxIterations,
    /// No step along the search direction decreased the objective (at numerical precision).
    LineSearch,
}

/// The result of [`minimize`].
#[derive(Clone, Debug)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub stop: Stop,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimizes `f` (returning value and gradient) from `x0`, keeping `memory` correction pairs.
pub fn minimize(
    mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: Vec<f64>,
    memory: usize,
    max_iter: usize,
    tol: f64,
) -> Minimum {
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = std::collections::VecDeque::new();
    for it in 0..max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tol {
            return Minimum { x, value: fx, iterations: it, stop: Stop::Converged };
        }
        // Two-loop recursion: d = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = pairs
            .back()
            .map_or(1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0), |(s, y, _)| dot(s, y) / dot(y, y));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in pairs.iter().zip(alphas.into_iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature went bad): restart from steepest descent.
            pairs.clear();
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
        }
        // Backtracking Armijo line search from the full step.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let xn: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + step * di).collect();
            let (fn_, gn) = f(&xn);
            if fn_.is_finite() && fn_ <= fx + 1e-4 * step * slope {
                accepted = Some((xn, fn_, gn));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fn_, gn)) = accepted else {
            return Minimum { x, value: fx, iterations: it, stop: Stop::LineSearch };
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if pairs.len() == memory {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        x = xn;
        fx = fn_;
        g = gn;
    }
    Minimum { x, value: fx, iterations: max_iter, stop: Stop::MaxIterations }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let f = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            (v, vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)])
        };
        let m = minimize(f, vec![-1.2, 1.0], 10, 500, 1e-8);
        assert_eq!(m.stop, Stop::Converged);
        assert!((m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6, "{:?}", m.x);
    }

    #[test]
    fn solves_a_quadratic_exactly() {
        // f = ½ xᵀAx − bᵀx with A = diag(1, 10, 100): minimum at A⁻¹b.
        let a = [1.0, 10.0, 100.0];
        let b = [1.0, 2.0, 3.0];
        let f = |x: &[f64]| {
            let v = (0..3).map(|i| 0.5 * a[i] * x[i] * x[i] - b[i] * x[i]).sum();
            (v, (0..3).map(|i| a[i] * x[i] - b[i]).collect())
        };
        let m = minimize(f, vec![0.0; 3], 5, 100, 1e-10);
        for i in 0..3 {
            assert!((m.x[i] - b[i] / a[i]).abs() < 1e-8);
        }
    }
}
