//! `metrics.jsonl`: one JSON object per logged step, flushed line by line so that a crash
//! never leaves half a line. On resume, lines past the checkpoint's step are dropped first (they
//! will be logged again), so the file always describes one consistent run. The same lines go
//! to TensorBoard's event file ([`super::tensorboard`]), rebuilt from the kept lines on resume.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::tensorboard::EventWriter;
use crate::eval::monitor::MonitorRecord;

/// What is logged at a step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    /// Images per second since the previous line; each image gives a pair of views, so this is
    /// pairs/s (twice as many views go through the encoder). Files written before the rename
    /// call it `images_per_sec`.
    #[serde(alias = "images_per_sec")]
    pub pairs_per_sec: f64,
    /// Mean cosine similarity of positive pairs: for SimCLR the two views' projections; for the
    /// other methods each view's loss row (prediction, query, projection, DINO's logits) with the
    /// other view's target (`crate::method::objective`).
    pub pos_sim: f64,
    /// The same over the negative pairs (other images' targets, or MoCo's queue).
    pub neg_sim: f64,
    /// NNCLR with labels: the share of nearest neighbours (from the support queue) whose label
    /// is the anchor's, over the anchors whose neighbour has a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour_agreement: Option<f64>,
    /// The EMA teacher's momentum at this step (methods with a teacher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_momentum: Option<f64>,
    /// When the line was logged (seconds since the Unix epoch; 0 in files written before it was
    /// recorded). TensorBoard's wall time.
    #[serde(default)]
    pub wall_time: f64,
    /// Seconds of training since the run started (across resumes).
    #[serde(default)]
    pub elapsed_s: f64,
    /// Processes (ranks) that trained this step together.
    #[serde(default = "one")]
    pub world_size: usize,
    /// Side of the training views at this step (`augment.size`, or the schedule's: its ramp is
    /// rounded to multiples of 4 pixels).
    #[serde(default)]
    pub size: usize,
    /// Collapse and representation metrics on the held-out images, when computed at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorRecord>,
}

fn one() -> usize {
    1
}

/// The append-only metrics file.
pub struct MetricsLog {
    file: File,
    path: PathBuf,
    tensorboard: Option<EventWriter>,
}

impl MetricsLog {
    /// Opens `path` for appending; with `keep_until = Some(s)`, first drops lines whose step is
    /// beyond `s` (and any incomplete last line).
    pub fn open(path: &Path, keep_until: Option<u64>) -> Result<Self> {
        if let (Some(limit), true) = (keep_until, path.exists()) {
            let reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
            let mut kept = String::new();
            for line in reader.lines() {
                let line = line?;
                let step = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v.get("step")?.as_u64());
                if step.is_some_and(|s| s <= limit) {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
            crate::atomic::write_bytes(path, kept.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file, path: path.to_path_buf(), tensorboard: None })
    }

    /// Mirrors the file into a TensorBoard event file in `dir`: a new one holding the lines
    /// kept so far, then every line written.
    pub fn with_tensorboard(mut self, dir: &Path) -> Result<Self> {
        let history = if self.path.exists() { read(&self.path)? } else { Vec::new() };
        self.tensorboard = Some(EventWriter::create(dir, &history)?);
        Ok(self)
    }

    /// Flushes the lines written so far to disk (before each checkpoint, so that the file
    /// describes at least the checkpoint's steps after a power cut).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().context("syncing metrics.jsonl")?;
        self.tensorboard.as_mut().map_or(Ok(()), EventWriter::sync)
    }

    pub fn write(&mut self, m: &StepMetrics) -> Result<()> {
        let mut line = serde_json::to_string(m)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.tensorboard.as_mut().map_or(Ok(()), |t| t.write(m))
    }
}

/// Reads every line of a metrics file.
pub fn read(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not a metrics record", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_written_before_the_rename_still_read() {
        let old = r#"{"step":3,"epoch":0,"loss":2.5,"lr":0.1,"images_per_sec":812.5,"pos_sim":0.5,"neg_sim":0.1}"#;
        let m: StepMetrics = serde_json::from_str(old).unwrap();
        assert_eq!((m.step, m.pairs_per_sec, m.world_size), (3, 812.5, 1));
    }

    #[test]
    fn resume_drops_lines_past_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&p, None).unwrap();
        for step in [10, 20, 30] {
            log.write(&StepMetrics { step, loss: step as f64, ..Default::default() }).unwrap();
        }
        drop(log);
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"step\": 4").unwrap();
        let mut log = MetricsLog::open(&p, Some(20)).unwrap();
        log.write(&StepMetrics { step: 30, loss: 1.0, ..Default::default() }).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.iter().map(|m| (m.step, m.loss)).collect::<Vec<_>>(), vec![(10, 10.0), (20, 20.0), (30, 1.0)]);
    }
}
