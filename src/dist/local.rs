//! Ranks as threads of one process, for tests: `group(n)` makes `n` connected [`Collective`]s
//! whose operations meet at a barrier and exchange bytes through shared slots (sums are taken
//! in rank order, so every rank gets the same values, as from MPI).

use std::sync::{Arc, Barrier, Mutex};

use super::{Collective, World};

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

/// One thread's rank of a [`group`].
#[derive(Debug)]
pub struct LocalRank {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

/// `n` ranks that talk to each other; give each to its own thread.
pub fn group(n: usize) -> Vec<World> {
    let shared = Arc::new(Shared { barrier: Barrier::new(n), slots: Mutex::new(vec![Vec::new(); n]) });
    (0..n).map(|rank| Arc::new(LocalRank { rank, size: n, shared: shared.clone() }) as World).collect()
}

impl LocalRank {
    fn exchange(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.shared.slots.lock().unwrap()[self.rank] = mine.to_vec();
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().unwrap().clone();
        self.shared.barrier.wait();
        all
    }
}

fn sum_into<T: Copy + std::ops::AddAssign, const W: usize>(
    buf: &mut [T],
    all: &[Vec<u8>],
    from: impl Fn([u8; W]) -> T,
) {
    for (k, v) in buf.iter_mut().enumerate() {
        let mut it = all.iter().map(|b| from(b[k * W..(k + 1) * W].try_into().unwrap()));
        let mut acc = it.next().unwrap();
        for x in it {
            acc += x;
        }
        *v = acc;
    }
}

impl Collective for LocalRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) {
        let all = self.exchange(&buf.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        sum_into(buf, &all, f32::from_le_bytes);
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        let all = self.exchange(&buf.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        sum_into(buf, &all, f64::from_le_bytes);
    }
    fn all_gather_f32(&self, mine: &[f32]) -> Vec<f32> {
        let all = self.exchange(&mine.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        all.iter().flat_map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()))).collect()
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(mine)
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        self.exchange(&data).swap_remove(0)
    }
    fn engine(&self) -> String {
        "threads (tests)".into()
    }
}

/// Runs `f(rank's world)` on `n` threads at once; returns the results in rank order.
pub fn run<T: Send>(n: usize, f: impl Fn(World) -> T + Sync) -> Vec<T> {
    let worlds = group(n);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = worlds.into_iter().map(|w| s.spawn(move || f(w))).collect();
        handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    })
}
