//! `selfsup bench decode`: time to decode a dataset into the in-memory cache.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::config::Config;
use crate::data::open_dataset;

/// The measured figures of one load.
#[derive(Debug)]
pub struct DecodeBench {
    pub images: usize,
    pub seconds: f64,
    pub cached_bytes: u64,
    pub allocated_bytes: u64,
}

/// Opens `path` `rounds` times on `threads` threads and reports the median load.
pub fn run(path: &Path, cfg: &Config, threads: usize, rounds: usize) -> Result<Vec<DecodeBench>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    (0..rounds)
        .map(|_| {
            pool.install(|| {
                let t = Instant::now();
                let ds = open_dataset(path, cfg, false)?;
                let seconds = t.elapsed().as_secs_f64();
                Ok(DecodeBench {
                    images: ds.len(),
                    seconds,
                    cached_bytes: ds.cached_bytes(),
                    allocated_bytes: ds.cache_allocated_bytes(),
                })
            })
        })
        .collect()
}
