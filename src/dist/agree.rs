//! Before the first step the ranks check that they are one run: the same resolved
//! configuration, the same command-line options that shape the run, and the same images. A
//! rank started with another `--set`, another data folder or a folder that differs on its
//! node is refused at start, on every rank, with what differs — rather than training a model
//! from inconsistent halves.

use std::path::Path;

use anyhow::{Result, bail};

use super::Collective;
use crate::data::Dataset;

/// What every rank must share with rank 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    /// The resolved configuration (TOML).
    pub config: String,
    /// Command-line options beyond the configuration (`--resume`, `--stop-after-steps`, …).
    pub options: String,
    /// The dataset as [`data_fingerprint`] describes it.
    pub data: String,
}

impl RunIdentity {
    fn to_bytes(&self) -> Vec<u8> {
        [self.config.as_str(), self.options.as_str(), self.data.as_str()].join("\0").into_bytes()
    }

    fn from_bytes(b: &[u8]) -> Self {
        let s = String::from_utf8_lossy(b);
        let mut it = s.split('\0').map(str::to_string);
        let mut next = || it.next().unwrap_or_default();
        RunIdentity { config: next(), options: next(), data: next() }
    }
}

/// The number of images and classes of `ds`, and a hash of their names (relative to the
/// dataset's root, so copies at other paths on other nodes agree) and labels.
pub fn data_fingerprint(ds: &Dataset) -> String {
    let mut h = super::Fnv::new();
    let root = ds.root().display().to_string();
    for i in 0..ds.len() {
        let name = ds.name(i);
        let rel = name.strip_prefix(&root).unwrap_or(&name);
        h.eat(rel.bytes().chain(ds.label(i).unwrap_or(u32::MAX).to_le_bytes()));
    }
    format!("{} images in {} classes (names and labels hash {:016x})", ds.len(), ds.classes().len(), h.finish())
}

/// The keys whose values differ between two configurations: `key = a on rank r but b on rank 0`.
fn config_differences(mine: &str, root: &str, rank: usize) -> Vec<String> {
    crate::config::differences(mine, root)
        .into_iter()
        .map(|(k, a, b)| format!("{k} = {a} on rank {rank} but {b} on rank 0"))
        .collect()
}

/// Fails on every rank, naming what differs, unless all ranks share rank 0's identity.
pub fn check(world: &dyn Collective, mine: &RunIdentity, data_path: &Path) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let all: Vec<RunIdentity> =
        world.all_gather_bytes(&mine.to_bytes()).iter().map(|b| RunIdentity::from_bytes(b)).collect();
    let root = &all[0];
    let mut problems = Vec::new();
    for (r, id) in all.iter().enumerate().skip(1) {
        problems.extend(config_differences(&id.config, &root.config, r));
        if id.options != root.options {
            problems.push(format!("options {} on rank {r} but {} on rank 0", id.options, root.options));
        }
        if id.data != root.data {
            problems.push(format!("rank {r} reads {}, rank 0 reads {}", id.data, root.data));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the ranks were not started as one run (every rank needs the same command, configuration and data; this rank's data is {}): {}",
            data_path.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_are_listed_with_both_values() {
        let a = "seed = 1\n[train]\nbatch_size = 64\nepochs = 3\n";
        let b = "seed = 1\n[train]\nbatch_size = 32\nepochs = 3\n[model]\nsync_batch_norm = true\n";
        let d = config_differences(a, b, 1);
        assert_eq!(
            d,
            vec![
                "model.sync_batch_norm = (unset) on rank 1 but true on rank 0".to_string(),
                "train.batch_size = 64 on rank 1 but 32 on rank 0".to_string(),
            ]
        );
        assert!(config_differences(a, a, 1).is_empty());
    }

    #[test]
    fn ranks_with_another_config_or_data_are_refused_on_every_rank() {
        let results = crate::dist::local::run(2, |world| {
            let r = world.rank();
            let id = RunIdentity {
                config: format!("[optim]\nlr = {}\n", if r == 0 { "0.1" } else { "0.2" }),
                options: "resume=false".into(),
                data: format!("{} images", 10 + r),
            };
            check(&*world, &id, Path::new("/data")).map_err(|e| e.to_string())
        });
        for e in results {
            let e = e.unwrap_err();
            assert!(e.contains("optim.lr = 0.2 on rank 1 but 0.1 on rank 0"), "{e}");
            assert!(e.contains("rank 1 reads 11 images, rank 0 reads 10 images"), "{e}");
        }
        let ok = crate::dist::local::run(2, |world| {
            let id = RunIdentity { config: "seed = 1\n".into(), options: String::new(), data: "x".into() };
            check(&*world, &id, Path::new("/data")).is_ok()
        });
        assert_eq!(ok, vec![true, true]);
    }
}
