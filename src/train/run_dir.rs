//! The run folder: what `selfsup pretrain --out DIR` writes, and the checks that keep one run
//! from overwriting another.
//!
//! ```text
//! DIR/config.toml              the resolved configuration
//! DIR/device.txt               the backend and device the run used
//! DIR/data.txt                 the --data path it trained on
//! DIR/metrics.jsonl            one JSON object per logged step
//! DIR/checkpoint.safetensors   model, optimizer and position (see `crate::checkpoint`)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }

    /// Creates the folder for a new run (refusing one that already holds a run) or checks that
    /// a resumed run has its checkpoint.
    pub fn prepare(root: &Path, resume: bool) -> Result<Self> {
        let dir = Self::new(root);
        if resume {
            if !dir.checkpoint().is_file() {
                bail!("--resume: {} has no checkpoint to resume from", dir.checkpoint().display());
            }
        } else {
            if dir.checkpoint().exists() || dir.metrics().exists() {
                bail!("{} already holds a run: pass --resume to continue it, or choose another --out", root.display());
            }
            std::fs::create_dir_all(root).with_context(|| format!("creating run folder {}", root.display()))?;
        }
        Ok(dir)
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
