//! The run folder: what `selfsup pretrain --out DIR` writes, and the checks that keep one run
//! from overwriting another.
//!
//! ```text
//! DIR/config.toml              the resolved configuration
//! DIR/device.txt               the backend and device the run used
//! DIR/data.txt                 the --data path it trained on
//! DIR/metrics.jsonl            one JSON object per logged step
//! DIR/checkpoint.safetensors   model, optimizer and position (see `crate::checkpoint`)
//! DIR/checkpoints/step-N.safetensors   the last `train.keep_checkpoints` of them (when > 1;
//!                              the newest is the same file as checkpoint.safetensors)
//! DIR/.lock                    held (an OS lock) by the run writing the folder
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// How `pretrain` treats a run folder that may already hold a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resume {
    /// Start a new run; refuse a folder that holds one.
    No,
    /// Continue the run in the folder; refuse a folder without a checkpoint.
    Yes,
    /// Continue when the folder holds a checkpoint, start a new run otherwise.
    Auto,
}

/// The OS lock on a run folder, held while the run writes it. The OS releases it when the
/// process ends, however it ends, so a killed run leaves no stale lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Paths inside a run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub fn device(&self) -> PathBuf {
        self.root.join("device.txt")
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data.txt")
    }

    /// Where evaluation results of this run's encoder are kept (`eval/*.json`).
    pub fn eval(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// TensorBoard's event file (`tensorboard --logdir` this, or the folder of runs).
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tensorboard")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }

    /// Where the kept checkpoints (`train.keep_checkpoints > 1`) live.
    pub fn kept_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The kept checkpoint of global step `step`.
    pub fn kept(&self, step: u64) -> PathBuf {
        self.kept_dir().join(format!("step-{step:09}.safetensors"))
    }

    /// The kept checkpoints, oldest first, with their steps.
    pub fn kept_checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(self.kept_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// Deletes kept checkpoints beyond the newest `keep`, and any newer than `after` (a run
    /// resumed from an earlier checkpoint replaces the later ones).
    pub fn prune_kept(&self, keep: usize, after: Option<u64>) -> Result<()> {
        let mut kept = self.kept_checkpoints();
        if let Some(limit) = after {
            for (_, p) in kept.iter().filter(|(s, _)| *s > limit) {
                std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
            }
            kept.retain(|(s, _)| *s <= limit);
        }
        let excess = kept.len().saturating_sub(keep);
        for (_, p) in &kept[..excess] {
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
        }
        Ok(())
    }

    /// Deletes the temporary files of writes that a killed run left unfinished (`.NAME.tmp-PID`,
    /// see `crate::atomic`): up to a checkpoint's size each. Only with the lock held.
    fn remove_stale_temporaries(&self) {
        for dir in [self.root.clone(), self.kept_dir()] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Takes the folder's lock (creating the folder), or says which process holds it.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.root).with_context(|| format!("creating run folder {}", self.root.display()))?;
        let path = self.root.join(".lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { String::new() } else { format!(" ({holder})") };
                bail!(
                    "{} is in use by another selfsup pretrain{who}: wait for it to end, or choose another --out",
                    self.root.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                // Some network file systems have no locks: say so and go on without one.
                eprintln!(
                    "warning: cannot lock {} ({e}); a second run writing into this folder would not be noticed",
                    path.display()
                );
                return Ok(RunLock { _file: file });
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let _ = file.set_len(0).and_then(|()| writeln!(file, "pid {} on {}", std::process::id(), host.trim()));
        Ok(RunLock { _file: file })
    }

    /// Takes the folder for a run (locking it): returns whether the run resumes. A new run
    /// refuses a folder that holds one; `Resume::Yes` needs a checkpoint (`from`, or the
    /// folder's); `Resume::Auto` resumes when the folder holds a checkpoint.
    pub fn prepare(root: &Path, resume: Resume, from: Option<&Path>) -> Result<(Self, RunLock, bool)> {
        let dir = Self::new(root);
        let has_checkpoint = from.map_or_else(|| dir.checkpoint().is_file(), Path::is_file);
        if resume == Resume::Yes && !has_checkpoint {
            bail!(
                "--resume: {} has no checkpoint to resume from",
                from.map_or_else(|| dir.checkpoint(), Path::to_path_buf).display()
            );
        }
        let lock = dir.lock()?;
        dir.remove_stale_temporaries();
        let resuming = match resume {
            Resume::Yes => true,
            Resume::Auto => has_checkpoint,
            Resume::No => {
                if dir.checkpoint().exists() || dir.metrics().exists() {
                    bail!(
                        "{} already holds a run: pass --resume to continue it (or --resume=auto), or choose another --out",
                        root.display()
                    );
                }
                false
            }
        };
        Ok((dir, lock, resuming))
    }
}

/// Finds the checkpoint a user means by `path`: a checkpoint file, or a run folder holding one.
pub fn checkpoint_path(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let inside = RunDir::new(path).checkpoint();
    if inside.is_file() {
        return Ok(inside);
    }
    if path.exists() {
        bail!("{}: no checkpoint.safetensors in this run folder (has the run saved one yet?)", path.display());
    }
    bail!("{}: no such run folder or checkpoint file", path.display())
}
