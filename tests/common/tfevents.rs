//! A TensorBoard event-file reader written for the tests, independent of selfsup's writer: the
//! TFRecord framing with both masked CRC-32Cs checked bit by bit, and the protobuf fields of
//! `Event`, `Summary.Value` and `SessionLog` decoded by hand from the wire format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One event as the test sees it.
#[derive(Debug, Default, Clone)]
pub struct Ev {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub session_log_status: Option<u64>,
    /// `Summary.Value`s: tag → `simple_value`.
    pub values: BTreeMap<String, f32>,
}

fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

fn masked(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

/// The fields of one message: (field number, wire type, raw bytes or varint value).
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at);
        let (number, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Fixed64(b[at - 8..at].try_into().unwrap())
            }
            2 => {
                let len = varint(b, &mut at) as usize;
                at += len;
                Field::Bytes(&b[at - len..at])
            }
            5 => {
                at += 4;
                Field::Fixed32(b[at - 4..at].try_into().unwrap())
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((number, f));
    }
    out
}

fn event(b: &[u8]) -> Ev {
    let mut e = Ev::default();
    for (n, f) in fields(b) {
        match (n, f) {
            (1, Field::Fixed64(x)) => e.wall_time = f64::from_le_bytes(x),
            (2, Field::Varint(x)) => e.step = x as i64,
            (3, Field::Bytes(x)) => e.file_version = Some(String::from_utf8(x.to_vec()).unwrap()),
            (5, Field::Bytes(summary)) => {
                for (n, f) in fields(summary) {
                    let (1, Field::Bytes(value)) = (n, f) else { panic!("Summary holds only values") };
                    let (mut tag, mut x) = (None, None);
                    for (n, f) in fields(value) {
                        match (n, f) {
                            (1, Field::Bytes(t)) => tag = Some(String::from_utf8(t.to_vec()).unwrap()),
                            (2, Field::Fixed32(v)) => x = Some(f32::from_le_bytes(v)),
                            _ => panic!("unexpected Summary.Value field {n}"),
                        }
                    }
                    let tag = tag.expect("a tag");
                    let x = x.unwrap_or_else(|| panic!("{tag}: no simple_value"));
                    assert!(e.values.insert(tag.clone(), x).is_none(), "tag {tag} twice in one event");
                }
            }
            (7, Field::Bytes(log)) => {
                for (n, f) in fields(log) {
                    if let (1, Field::Varint(s)) = (n, f) {
                        e.session_log_status = Some(s);
                    }
                }
            }
            (n, _) => panic!("unexpected Event field {n}"),
        }
    }
    e
}

/// Every record of an event file, both CRCs of each checked.
pub fn read(path: &Path) -> Vec<Ev> {
    let b = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        assert!(b.len() - at >= 12, "{}: a record header cut at byte {at}", path.display());
        let len_bytes = &b[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap());
        assert_eq!(len_crc, masked(len_bytes), "{}: length CRC at byte {at}", path.display());
        assert!(b.len() - at >= 16 + len, "{}: a record cut at byte {at}", path.display());
        let data = &b[at + 12..at + 12 + len];
        let data_crc = u32::from_le_bytes(b[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(data_crc, masked(data), "{}: data CRC at byte {at}", path.display());
        out.push(event(data));
        at += 16 + len;
    }
    out
}

/// The one event file in `run/tensorboard` (the test fails if there are several).
pub fn only_file(run: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(run.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("tfevents"))
        .collect();
    assert_eq!(files.len(), 1, "one event file: {files:?}");
    files.into_iter().next().unwrap()
}

/// Where a tag's value sits in a `metrics.jsonl` line, and its scale (accuracies in percent).
fn json_path(tag: &str) -> (Vec<String>, f64) {
    let parts: Vec<&str> = tag.split('/').collect();
    let stat = |s: &str| match s {
        "std_sqrt_d" => "std_ratio".to_string(),
        other => other.to_string(),
    };
    match parts.as_slice() {
        ["train", "view_size"] => (vec!["size".into()], 1.0),
        ["train", name] => (vec![name.to_string()], 1.0),
        ["monitor", "collapse"] => (vec!["monitor".into(), "collapse".into()], 1.0),
        ["monitor", space @ ("backbone" | "projection"), s] => {
            (vec!["monitor".into(), space.to_string(), stat(s)], 1.0)
        }
        ["monitor", acc] => {
            let (what, k) = acc.rsplit_once('_').unwrap();
            (vec!["monitor".into(), what.into(), k.into()], 100.0)
        }
        _ => panic!("unknown tag {tag}"),
    }
}

/// Checks that the run's event file mirrors its `metrics.jsonl`: a file-version record, a
/// session start, then one event per line with the same steps in the same (strictly increasing)
/// order, and every value equal (as f32) to the line's; returns the events.
pub fn assert_mirrors_metrics(run: &Path) -> Vec<Ev> {
    let ev = read(&only_file(run));
    assert_eq!(ev[0].file_version.as_deref(), Some("brain.Event:2"));
    assert_eq!(ev[1].session_log_status, Some(1), "SessionLog.START");
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events = &ev[2..];
    let steps: Vec<i64> = events.iter().map(|e| e.step).collect();
    let want: Vec<i64> = lines.iter().map(|l| l["step"].as_i64().unwrap()).collect();
    assert_eq!(steps, want, "the event steps are metrics.jsonl's");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps strictly increase: {steps:?}");
    for (e, line) in events.iter().zip(&lines) {
        assert!(e.values.contains_key("train/loss") && e.values.contains_key("train/lr"));
        // serde_json's float parsing may be one unit in the last place off.
        assert!((e.wall_time - line["wall_time"].as_f64().unwrap()).abs() < 1e-6, "step {}: wall time", e.step);
        for (tag, &x) in &e.values {
            let (path, scale) = json_path(tag);
            let mut v = line;
            for p in &path {
                v = &v[p.as_str()];
            }
            let want = match v {
                serde_json::Value::Array(a) => f64::from(u8::from(!a.is_empty())),
                serde_json::Value::Null if tag == "monitor/collapse" => 0.0,
                other => other.as_f64().unwrap_or_else(|| panic!("step {}: {tag} has no value in {line}", e.step)),
            };
            assert_eq!(x, (scale * want) as f32, "step {}: {tag}", e.step);
        }
    }
    events.to_vec()
}
