//! Data-parallel training across processes: the collective operations a run needs, behind a
//! small trait of our own ([`Collective`]), so that the training step does not care whether it
//! is one process ([`Single`], where every operation is a no-op) or rank `r` of `N` processes
//! started by `mpirun` or Slurm's `srun` (`mpi_world.rs`, with the `mpi` cargo feature). Another
//! engine (say burn's NCCL all-reduce for several GPUs of one process) would be one more
//! implementation of the trait.
//!
//! How a run is split (README, "Several processes or machines"): `train.batch_size` is the
//! global batch, each rank augments and encodes its slice of every step's images
//! ([`crate::train::loader`]), the loss sees the whole global batch ([`global_batch`]), the
//! gradients are summed over the ranks ([`grads`]), and batch norm may use the global batch's
//! statistics ([`sync_bn`], [`all_reduce_op`]). Ranks agree on the configuration and data before the first step
//! ([`agree`]), and a collective that waits too long ends the process ([`watchdog`]).

pub mod agree;
pub mod all_reduce_op;
pub mod global_batch;
pub mod grads;
#[cfg(test)]
pub mod local;
#[cfg(feature = "mpi")]
mod mpi_world;
pub mod sync_bn;
pub mod watchdog;

use std::sync::Arc;

use anyhow::{Result, bail};

/// The collective operations of a group of ranks. Every rank must make the same calls in the
/// same order (as MPI requires); each call returns once every rank has made it.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over the ranks, in place; every rank gets the same values.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]);
    /// Element-wise sum over the ranks, in place; every rank gets the same values.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]);
    /// Every rank's `mine` (all of the same length), concatenated in rank order.
    fn all_gather_f32(&self, mine: &[f32]) -> Vec<f32>;
    /// Every rank's bytes (of any lengths), in rank order.
    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>>;
    /// Rank 0's `data` on every rank (the argument is ignored elsewhere).
    fn broadcast_bytes(&self, data: Vec<u8>) -> Vec<u8>;
    /// The engine, for people ("MPI (Open MPI v4.1.4)").
    fn engine(&self) -> String;
    /// Ends every rank of the run at once with status `code` (after this rank printed why).
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Whether `c` is rank 0, which prints progress and writes the run folder.
pub fn is_root(c: &dyn Collective) -> bool {
    c.rank() == 0
}

/// One process on its own: every collective returns this rank's data.
#[derive(Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) {}
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) {}
    fn all_gather_f32(&self, mine: &[f32]) -> Vec<f32> {
        mine.to_vec()
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        vec![mine.to_vec()]
    }
    fn broadcast_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    fn engine(&self) -> String {
        "one process".into()
    }
}

/// A shared handle to the group a run computes in.
pub type World = Arc<dyn Collective>;

/// The single-process world.
pub fn single() -> World {
    Arc::new(Single)
}

static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();

/// Makes `world` the process's world (once, from `main`).
pub fn install(world: World) {
    let _ = WORLD.set(world);
}

/// The process's world: what [`install`] was given, else one process.
pub fn world() -> World {
    WORLD.get().cloned().unwrap_or_else(single)
}

/// What the launcher (`mpirun`, `srun`, MPICH's hydra) told this process: `(rank, size)`, from
/// the variables it sets, or `None` when no launcher started it.
pub fn launched() -> Option<(usize, usize)> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMIX_RANK", "PMIX_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
    ]
    .iter()
    .find_map(|(r, s)| Some((var(r)?, var(s)?)))
}

/// This process's index among the ranks on its machine (to pick its GPU), from the launcher.
pub fn local_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
}

/// How many ranks share this machine, from the launcher.
pub fn local_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
        .filter(|&n: &usize| n >= 1)
}

/// Worker threads for a rank when the user chose none: the machine's cores shared among the
/// ranks on it (`None` in one process, or when the launcher does not say how many share it).
pub fn default_threads(world: &dyn Collective) -> Option<usize> {
    if world.size() == 1 {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    local_size().map(|ranks| (cores / ranks).max(1))
}

/// Keeps the engine alive for the process's lifetime; dropping it shuts the engine down
/// (MPI_Finalize), so hold it in `main` until the command has finished.
pub struct Engine {
    #[cfg(feature = "mpi")]
    _universe: Option<::mpi::environment::Universe>,
}

/// The world this process belongs to: MPI when a launcher started several ranks (and the build
/// has the `mpi` feature), else one process. A launch of several ranks without MPI support is
/// an error, rather than N copies of one run writing the same folder.
pub fn init() -> Result<(World, Engine)> {
    // One rank (`mpirun -np 1`, or a Slurm batch step outside `srun`) is one process: MPI is not
    // started, so nothing depends on a launcher that is not needed.
    match launched() {
        None | Some((_, 0 | 1)) => Ok((single(), Engine::new_single())),
        Some((rank, size)) => init_mpi(rank, size),
    }
}

impl Engine {
    fn new_single() -> Self {
        Engine {
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }
}

#[cfg(feature = "mpi")]
fn init_mpi(_rank: usize, _size: usize) -> Result<(World, Engine)> {
    let (world, universe) = mpi_world::MpiWorld::init()?;
    Ok((Arc::new(world), Engine { _universe: Some(universe) }))
}

#[cfg(not(feature = "mpi"))]
fn init_mpi(rank: usize, size: usize) -> Result<(World, Engine)> {
    bail!(
        "this process was started as rank {rank} of {size} (by mpirun or srun), but this selfsup was built without MPI; rebuild it with `cargo install --path . --features mpi` (README: \"Several processes or machines\")"
    )
}

/// A 64-bit FNV-1a hash, for the cheap fingerprints the ranks compare (parameters, data).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn eat(&mut self, bytes: impl IntoIterator<Item = u8>) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Fails unless `batch` pairs divide evenly among the ranks; returns each rank's share.
pub fn per_rank(batch: usize, world: &dyn Collective) -> Result<usize> {
    let n = world.size();
    if !batch.is_multiple_of(n) || batch / n < 1 {
        bail!("train.batch_size = {batch} (the global batch) does not divide among {n} ranks: use a multiple of {n}");
    }
    Ok(batch / n)
}
