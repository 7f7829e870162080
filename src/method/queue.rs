//! A first-in-first-out queue of embeddings: MoCo's negative keys (He et al. 2020) and NNCLR's
//! support set (Dwibedi et al. 2021). It holds `method.queue_size` rows of the global batch's
//! detached embeddings (every rank pushes the same gathered rows, so the ranks' queues stay
//! equal), the oldest overwritten first; it starts full of random unit vectors (seeded), as
//! MoCo's and lightly's memory banks do, with unknown labels. Each row keeps the label of its
//! image when the data has labels (for NNCLR's neighbour agreement). Queue, labels and write
//! position are in the checkpoint, so a resumed run continues with the same queue.

use burn::prelude::*;
use rand::{RngExt, SeedableRng};

/// The label of a row whose image had none (or of the random initial rows).
pub const UNKNOWN: i64 = -1;

/// The queue.
#[derive(Clone, Debug)]
pub struct Queue {
    /// `[capacity, d]` on the device (no autodiff).
    keys: Tensor<2>,
    labels: Vec<i64>,
    /// The row the next push writes first.
    next: usize,
}

impl Queue {
    /// `capacity` random unit vectors of dimension `d` (a pure function of `seed`).
    pub fn random(capacity: usize, d: usize, seed: u64, device: &Device) -> Self {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5155_4555_4555);
        let mut values = Vec::with_capacity(capacity * d);
        for _ in 0..capacity {
            // Box–Muller normals, then the row scaled to unit length: uniform on the sphere.
            let row: Vec<f64> = (0..d)
                .map(|_| {
                    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                })
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            values.extend(row.iter().map(|x| (x / norm) as f32));
        }
        let keys = Tensor::<2>::from_data(TensorData::new(values, [capacity, d]), device);
        Self { keys, labels: vec![UNKNOWN; capacity], next: 0 }
    }

    /// A queue from its parts (as [`Self::parts`] gave them).
    pub fn from_parts(keys: Tensor<2>, labels: Vec<i64>, next: usize) -> anyhow::Result<Self> {
        let [capacity, _] = keys.dims();
        anyhow::ensure!(
            labels.len() == capacity && next < capacity.max(1),
            "queue of {capacity} rows with {} labels and write position {next}",
            labels.len()
        );
        Ok(Self { keys, labels, next })
    }

    /// Its parts: the rows, their labels, the write position.
    pub fn parts(&self) -> (&Tensor<2>, &[i64], usize) {
        (&self.keys, &self.labels, self.next)
    }

    pub fn capacity(&self) -> usize {
        self.labels.len()
    }

    /// The rows, `[capacity, d]` (order is storage order, not age; the losses do not care).
    pub fn keys(&self) -> Tensor<2> {
        self.keys.clone()
    }

    /// Pushes `rows` (`[m, d]`, detached) with their labels, overwriting the oldest rows, as
    /// pushing them one by one would (of more rows than the queue holds, the last `capacity`
    /// are kept).
    pub fn push(&mut self, rows: Tensor<2>, labels: &[i64]) {
        let [m, d] = rows.dims();
        debug_assert_eq!(labels.len(), m);
        let cap = self.capacity();
        let device = self.keys.device();
        let rows = rows.detach().to_device(&device);
        // Of more rows than it holds, the first ones would be overwritten within this push:
        // only the last `capacity` are written, where a row-by-row push would leave them.
        let (rows, labels) = if m > cap {
            self.next = (self.next + m - cap) % cap;
            (rows.narrow(0, m - cap, cap), &labels[m - cap..])
        } else {
            (rows, labels)
        };
        let m = labels.len();
        let first = m.min(cap - self.next);
        let keys = std::mem::replace(&mut self.keys, Tensor::zeros([1, 1], &device));
        let mut keys = keys.slice_assign([self.next..self.next + first, 0..d], rows.clone().narrow(0, 0, first));
        if first < m {
            keys = keys.slice_assign([0..m - first, 0..d], rows.narrow(0, first, m - first));
        }
        self.keys = keys;
        for (k, &l) in labels.iter().enumerate() {
            self.labels[(self.next + k) % cap] = l;
        }
        self.next = (self.next + m) % cap;
    }

    /// For each row of `z` (`[n, d]`), the queue row most similar by cosine (NNCLR's nearest
    /// neighbour): the rows `[n, d]` and their indices.
    pub fn nearest(&self, z: Tensor<2>) -> (Tensor<2>, Vec<usize>) {
        use crate::loss::contrastive::l2_normalize;
        let sim = l2_normalize(z.detach()).matmul(l2_normalize(self.keys.clone()).transpose());
        let idx = sim.argmax(1).reshape([-1]);
        let rows = self.keys.clone().select(0, idx.clone());
        let idx: Vec<usize> = idx
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("integer indices")
            .into_iter()
            .map(|i| i as usize)
            .collect();
        (rows, idx)
    }

    /// The label of row `i`.
    pub fn label(&self, i: usize) -> i64 {
        self.labels[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn rows(values: &[f32], d: usize) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(values.to_vec(), [values.len() / d, d]), &Device::flex())
    }

    /// Pushes against a plain FIFO on the host: a wrap-around, a push larger than the queue,
    /// labels following their rows.
    #[test]
    fn pushes_overwrite_the_oldest_rows_in_order() {
        let (cap, d) = (5, 2);
        let mut q = Queue::random(cap, d, 1, &Device::flex());
        let start = host(q.keys());
        for r in start.chunks(d) {
            let norm = (r[0] * r[0] + r[1] * r[1]).sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "random rows are unit vectors");
        }
        // A direct model: ring buffer of (row, label).
        let mut want: Vec<(Vec<f32>, i64)> = start.chunks(d).map(|r| (r.to_vec(), UNKNOWN)).collect();
        let mut next = 0;
        let mut counter = 0.0;
        for (m, _) in [(2, ()), (2, ()), (3, ()), (7, ())] {
            let values: Vec<f32> = (0..m * d)
                .map(|_| {
                    counter += 1.0;
                    counter
                })
                .collect();
            let labels: Vec<i64> = (0..m as i64).map(|i| 100 + i + counter as i64).collect();
            q.push(rows(&values, d), &labels);
            for (k, r) in values.chunks(d).enumerate() {
                want[next] = (r.to_vec(), labels[k]);
                next = (next + 1) % cap;
            }
            let got = host(q.keys());
            for (i, (row, label)) in want.iter().enumerate() {
                assert_eq!(&got[i * d..(i + 1) * d], &row[..], "row {i} after pushing {m}");
                assert_eq!(q.label(i), *label, "label {i}");
            }
            assert_eq!(q.parts().2, next);
        }
    }

    /// Nearest neighbours by cosine, not by dot product: a long vector in another direction
    /// loses to a short one in the same direction.
    #[test]
    fn nearest_is_by_cosine_similarity() {
        let keys = rows(&[10.0, 10.0, 0.1, 0.0, 0.0, -1.0], 2);
        let q = Queue::from_parts(keys, vec![7, 8, 9], 0).unwrap();
        let (got, idx) = q.nearest(rows(&[1.0, 0.05, 0.3, 0.3, 0.1, -5.0], 2));
        assert_eq!(idx, vec![1, 0, 2]);
        assert_eq!(host(got), vec![0.1, 0.0, 10.0, 10.0, 0.0, -1.0]);
    }
}
