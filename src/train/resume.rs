//! Resuming a run: the checkpoint it continues from, checked (a damaged or truncated file is
//! refused naming the newest kept checkpoint that loads), and the command line's configuration
//! compared with the run's (`--resume` takes the command the run started with).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::run_dir::RunDir;
use crate::checkpoint::Checkpoint;
use crate::config::Config;

/// The run's checkpoint bytes, checked: a damaged file is refused naming the newest kept
/// checkpoint that loads, which `--resume-from` can continue from.
pub fn read_checkpoint(run: &RunDir, path: &Path) -> Result<(Vec<u8>, Checkpoint)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    match Checkpoint::from_bytes(&bytes, path) {
        Ok(ck) => Ok((bytes, ck)),
        Err(e) => {
            // Each kept file read once: not the damaged one itself (a hard link of it), and loading.
            let good = run
                .kept_checkpoints()
                .into_iter()
                .rev()
                .find(|(_, p)| std::fs::read(p).is_ok_and(|b| b != bytes && Checkpoint::from_bytes(&b, p).is_ok()));
            match good {
                Some((step, p)) => Err(e.context(format!(
                    "cannot resume from it; the newest good checkpoint is {} (step {step}): continue from it with --resume-from {}",
                    p.display(),
                    p.display()
                ))),
                None => Err(e.context(format!(
                    "cannot resume from it, and no earlier checkpoint is kept in {} (train.keep_checkpoints keeps some)",
                    run.kept_dir().display()
                ))),
            }
        }
    }
}

/// Refuses a `--config`/`--set` given with `--resume` that does not resolve to the run's own
/// configuration, listing every differing key.
pub fn check_same_config(given: &Config, saved: &Config, checkpoint: &Path) -> Result<()> {
    let diffs = crate::config::differences(&given.to_toml(), &saved.to_toml());
    if !diffs.is_empty() {
        let list: Vec<String> =
            diffs.iter().map(|(k, a, b)| format!("{k} = {a} on the command line but {b} in the run")).collect();
        bail!(
            "--resume: the configuration on the command line differs from the run's (saved in {}): {}. Drop --config/--set to continue with the run's own, or start a new run in another --out",
            checkpoint.display(),
            list.join("; ")
        );
    }
    Ok(())
}
