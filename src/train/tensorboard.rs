//! TensorBoard event files beside `metrics.jsonl` (`RUN/tensorboard/events.out.tfevents.*`), so
//! that `tensorboard --logdir runs/` shows and compares runs without conversion.
//!
//! Every line of `metrics.jsonl` becomes one `Event` whose summary holds that line's scalars
//! under stable tags ([`scalars`]). The file is TFRecord-framed (length, masked CRC-32C of the
//! length, the `Event` protobuf, masked CRC-32C of the data), the protobuf written by prost and
//! the CRC by the `crc32c` crate.
//!
//! `metrics.jsonl` is the run's record; the event file mirrors it. Whenever a run starts or
//! resumes, the event file is written anew from the lines `metrics.jsonl` kept (those up to the
//! checkpoint's step) under a new name, and the folder's other event files are deleted. So
//! after `--resume`, `--resume-from` or a kill the folder holds one file whose steps increase
//! strictly, and its values are `metrics.jsonl`'s. A TensorBoard that read the old file while
//! it existed forgets its later steps too: the new file starts with a `SessionLog.START` (the
//! Python reader then purges what it holds at and after that step) and re-logs the first step
//! (the Rust reader drops a series' records at or after a step logged again).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

use super::metrics::StepMetrics;
use crate::eval::collapse::SpaceStats;

/// `tensorboard/compat/proto/event.proto`'s `Event` (the fields selfsup writes; `file_version`,
/// `summary` and `session_log` are members of its oneof `what`, so at most one is set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "7")]
    pub session_log: Option<SessionLog>,
}

/// `summary.proto`'s `Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `Summary.Value` with a scalar (`simple_value`, which TensorBoard's Scalars dashboard reads).
/// `optional` so that a value of 0 is still written (it is a oneof member).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// `event.proto`'s `SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `SessionLog.SessionStatus.START`.
pub const SESSION_START: i32 = 1;

/// The version string TensorBoard expects in a file's first event.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Marks the files this module writes (TensorBoard reads any name containing `tfevents`).
const PREFIX: &str = "events.out.tfevents.";

/// TFRecord's masked CRC-32C (`(crc >> 15 | crc << 17) + 0xa282ead8`): a CRC of data that
/// itself holds CRCs stays informative.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one TFRecord holding `data` to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// The scalars of one `metrics.jsonl` line, by TensorBoard tag. Tags are stable: `train/…` for
/// what every logged step has, `monitor/{backbone,projection}/…` for the collapse statistics
/// on the held-out images, `monitor/knn_top1` (and `_top5`) for the online k-NN and
/// `monitor/linear_top1` for the online linear classifier; accuracies in percent.
pub fn scalars(m: &StepMetrics) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = vec![
        ("train/loss".into(), m.loss),
        ("train/lr".into(), m.lr),
        ("train/pairs_per_sec".into(), m.pairs_per_sec),
        ("train/pos_sim".into(), m.pos_sim),
        ("train/neg_sim".into(), m.neg_sim),
        ("train/epoch".into(), m.epoch as f64),
        ("train/view_size".into(), m.size as f64),
    ];
    if let Some(a) = m.neighbour_agreement {
        v.push(("train/neighbour_agreement".into(), a));
    }
    if let Some(t) = m.teacher_momentum {
        v.push(("train/teacher_momentum".into(), t));
    }
    if let Some(r) = &m.monitor {
        for (space, s) in [("backbone", &r.backbone), ("projection", &r.projection)] {
            if let Some(s) = s {
                v.extend(space_scalars(space, s));
            }
        }
        if r.backbone.is_some() || r.projection.is_some() {
            v.push(("monitor/collapse".into(), if r.collapse.is_empty() { 0.0 } else { 1.0 }));
        }
        if let Some(k) = &r.knn {
            v.push(("monitor/knn_top1".into(), 100.0 * k.top1));
            v.push(("monitor/knn_top5".into(), 100.0 * k.top5));
        }
        if let Some(l) = &r.linear {
            v.push(("monitor/linear_top1".into(), 100.0 * l.top1));
        }
    }
    v
}

fn space_scalars(space: &str, s: &SpaceStats) -> Vec<(String, f64)> {
    [
        ("std", s.std),
        ("std_sqrt_d", s.std_ratio),
        ("effective_rank", s.effective_rank),
        ("alignment", s.alignment),
        ("uniformity", s.uniformity),
        ("pos_sim", s.pos_sim),
        ("neg_sim", s.neg_sim),
    ]
    .into_iter()
    .map(|(name, x)| (format!("monitor/{space}/{name}"), x))
    .collect()
}

/// The event of one `metrics.jsonl` line.
fn event(m: &StepMetrics) -> Event {
    let value = scalars(m).into_iter().map(|(tag, x)| SummaryValue { tag, simple_value: Some(x as f32) }).collect();
    Event {
        wall_time: m.wall_time,
        step: m.step as i64,
        file_version: None,
        summary: Some(Summary { value }),
        session_log: None,
    }
}

/// The run's event file, open for appending.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Writes a new event file into `dir` holding `history` (the lines `metrics.jsonl` kept),
    /// durably, then deletes the folder's other event files; returns it open for appending.
    pub fn create(dir: &Path, history: &[StepMetrics]) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // TensorBoard's `events.out.tfevents.<seconds>.<host>.<pid>.<uid>`; the microseconds
        // tell apart two files one process starts in the same second.
        let name = format!(
            "{PREFIX}{:010}.{}.{}.{:06}.selfsup",
            now.as_secs(),
            hostname(),
            std::process::id(),
            now.subsec_micros()
        );
        let path = dir.join(name);
        let first_step = history.first().map_or(0, |m| m.step as i64);
        let mut bytes = Vec::new();
        let header = [
            Event { wall_time: now.as_secs_f64(), file_version: Some(FILE_VERSION.into()), ..Default::default() },
            Event {
                wall_time: now.as_secs_f64(),
                step: first_step,
                session_log: Some(SessionLog { status: SESSION_START }),
                ..Default::default()
            },
        ];
        for e in header.iter().cloned().chain(history.iter().map(event)) {
            frame(&e.encode_to_vec(), &mut bytes);
        }
        crate::atomic::write_bytes(&path, &bytes)?;
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?.flatten() {
            let other = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_temporary = name.starts_with('.') && name.contains(".tmp-");
            if other != path && (name.starts_with(PREFIX) || stale_temporary) {
                std::fs::remove_file(&other).with_context(|| format!("removing {}", other.display()))?;
            }
        }
        crate::atomic::sync_dir(dir)?;
        let file =
            OpenOptions::new().append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file, path })
    }

    /// Appends the event of one `metrics.jsonl` line (one write: a kill leaves whole records
    /// or a cut last one, which readers take as the file's end).
    pub fn write(&mut self, m: &StepMetrics) -> Result<()> {
        let mut bytes = Vec::new();
        frame(&event(m).encode_to_vec(), &mut bytes);
        self.file.write_all(&bytes).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes what was written to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().with_context(|| format!("syncing {}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This machine's name as the file name's host part (TensorBoard's convention), with anything
/// but letters, digits, `-` and `_` replaced.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String =
        name.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() { "localhost".into() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_the_published_check_value_and_tensorboards_test_vector() {
        // The CRC-32C check value (RFC 3720's "123456789"); the test reader in
        // tests/common/tfevents.rs checks the files with a CRC of its own, bit by bit.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // tensorboard/data/server/masked_crc.rs's test vector.
        assert_eq!(masked_crc32c(b"\x1a\x11CRC test, one two"), 0x5794_d08a);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let c = crc32c::crc32c(&data);
        assert_eq!(masked_crc32c(&data), ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn a_record_is_length_crc_data_crc() {
        let mut out = Vec::new();
        frame(b"abc", &mut out);
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), masked_crc32c(&3u64.to_le_bytes()));
        assert_eq!(&out[12..15], b"abc");
        assert_eq!(u32::from_le_bytes(out[15..].try_into().unwrap()), masked_crc32c(b"abc"));
    }

    fn records(path: &Path) -> Vec<Event> {
        let b = std::fs::read(path).unwrap();
        let mut at = 0;
        let mut out = Vec::new();
        while at < b.len() {
            let len = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
            let data = &b[at + 12..at + 12 + len];
            out.push(Event::decode(data).unwrap());
            at += 16 + len;
        }
        out
    }

    #[test]
    fn a_new_file_replaces_the_folders_others_and_holds_the_history() {
        let d = tempfile::tempdir().unwrap();
        let line =
            |step| StepMetrics { step, loss: step as f64 / 10.0, wall_time: 100.0 + step as f64, ..Default::default() };
        let mut w = EventWriter::create(d.path(), &[line(1), line(2), line(3)]).unwrap();
        w.write(&line(4)).unwrap();
        let first = w.path().to_path_buf();
        drop(w);
        std::fs::write(d.path().join(".x.tmp-1"), b"left by a kill").unwrap();
        let w = EventWriter::create(d.path(), &[line(1), line(2)]).unwrap();
        assert_ne!(w.path(), first);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(names, [w.path().to_path_buf()], "one file left");
        let ev = records(w.path());
        assert_eq!(ev[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!((ev[1].session_log.as_ref().map(|s| s.status), ev[1].step), (Some(SESSION_START), 1));
        let steps: Vec<i64> = ev[2..].iter().map(|e| e.step).collect();
        assert_eq!(steps, [1, 2]);
        let loss =
            |e: &Event| e.summary.as_ref().unwrap().value.iter().find(|v| v.tag == "train/loss").unwrap().simple_value;
        assert_eq!(loss(&ev[3]), Some(0.2));
        assert_eq!(ev[3].wall_time, 102.0);
    }

    #[test]
    fn zero_values_are_written_and_monitor_tags_appear_with_the_monitor() {
        let m = StepMetrics::default();
        let e = event(&m);
        let v = &e.summary.unwrap().value;
        assert!(v.iter().any(|x| x.tag == "train/loss" && x.simple_value == Some(0.0)));
        assert!(!v.iter().any(|x| x.tag.starts_with("monitor/")));
        // The zero is on the wire: the value's encoding holds field 2 (fixed32).
        let bytes = SummaryValue { tag: "a".into(), simple_value: Some(0.0) }.encode_to_vec();
        assert_eq!(bytes, [0x0a, 1, b'a', 0x15, 0, 0, 0, 0]);
    }
}
