//! The [`Collective`] over MPI (Open MPI, MPICH, or a cluster's own build), through the `mpi`
//! crate: `mpirun -np N selfsup …` or `srun selfsup …` starts the ranks. MPI's default error
//! handler ends the whole job when a peer fails, and [`Collective::abort`] is `MPI_Abort`, so a
//! rank that stops on an error takes the others with it instead of leaving them waiting.

use std::sync::Mutex;

use anyhow::{Result, bail};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;
use super::watchdog;

/// `MPI_COMM_WORLD` of this process.
pub struct MpiWorld {
    /// Calls are made one at a time (MPI is initialized with `MPI_THREAD_SERIALIZED`).
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    version: String,
}

// SAFETY: the communicator is a handle into the MPI library, which was initialized for calls
// from any thread one at a time (`Threading::Serialized` or better, checked in `init`); the
// mutex makes every call one at a time.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiWorld(rank {} of {})", self.rank, self.size)
    }
}

impl MpiWorld {
    /// Initializes MPI; the [`Universe`] must live until the process is done with MPI.
    pub fn init() -> Result<(Self, Universe)> {
        let Some((universe, threading)) = mpi::initialize_with_threading(mpi::Threading::Serialized) else {
            bail!("MPI was already initialized in this process");
        };
        if matches!(threading, mpi::Threading::Single | mpi::Threading::Funneled) {
            bail!(
                "the MPI library offers thread level {threading:?}; selfsup needs at least Serialized (calls from any one thread at a time)"
            );
        }
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        let version = mpi::environment::library_version()
            .ok()
            .and_then(|v| v.lines().next().map(|l| l.split(',').next().unwrap_or(l).trim().to_string()))
            .unwrap_or_else(|| "MPI".into());
        Ok((MpiWorld { comm: Mutex::new(comm), rank, size, version }, universe))
    }

    fn with<T>(&self, op: &'static str, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        let _waiting = watchdog::waiting(op);
        f(&comm)
    }

    /// Lengths of every rank's buffer (`mine` here), gathered.
    fn lengths(&self, comm: &SimpleCommunicator, mine: usize) -> Vec<i32> {
        let mine = i32::try_from(mine).expect("a collective buffer under 2 GiB elements");
        let mut all = vec![0i32; self.size];
        comm.all_gather_into(&mine, &mut all[..]);
        all
    }
}

/// Offsets of consecutive blocks of `counts`.
fn displacements(counts: &[i32]) -> Vec<i32> {
    counts.iter().scan(0i32, |acc, &c| Some(std::mem::replace(acc, *acc + c))).collect()
}

/// The sums of `buf` over the ranks, in chunks small enough for MPI's `int` counts.
fn all_reduce_chunked<T: Equivalence + Copy + Default>(comm: &SimpleCommunicator, buf: &mut [T]) {
    const CHUNK: usize = 1 << 28;
    let mut out = vec![T::default(); buf.len().min(CHUNK)];
    for piece in buf.chunks_mut(CHUNK) {
        let out = &mut out[..piece.len()];
        comm.all_reduce_into(&piece[..], out, SystemOperation::sum());
        piece.copy_from_slice(out);
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) {
        self.with("all-reduce", |c| all_reduce_chunked(c, buf));
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        self.with("all-reduce", |c| all_reduce_chunked(c, buf));
    }
    fn all_gather_f32(&self, mine: &[f32]) -> Vec<f32> {
        self.with("all-gather", |c| {
            let mut all = vec![0f32; mine.len() * self.size];
            c.all_gather_into(mine, &mut all[..]);
            all
        })
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.with("all-gather", |c| {
            let counts = self.lengths(c, mine.len());
            let displs = displacements(&counts);
            let total: usize = counts.iter().map(|&n| n as usize).sum();
            let mut all = vec![0u8; total];
            {
                let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
                c.all_gather_varcount_into(mine, &mut part);
            }
            counts.iter().zip(&displs).map(|(&n, &d)| all[d as usize..(d + n) as usize].to_vec()).collect()
        })
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        self.with("broadcast", |c| {
            let root = c.process_at_rank(0);
            let mut len = data.len() as u64;
            root.broadcast_into(&mut len);
            let mut buf = if self.rank == 0 { data } else { vec![0u8; len as usize] };
            for piece in buf.chunks_mut(1 << 30) {
                root.broadcast_into(piece);
            }
            buf
        })
    }
    fn engine(&self) -> String {
        format!("MPI ({})", self.version)
    }
    fn abort(&self, code: i32) -> ! {
        // Not through the mutex: the call that failed may hold it.
        mpi::topology::SimpleCommunicator::world().abort(code)
    }
}
