//! Checkpoint files: one safetensors file holding the model's tensors (`model.<path>`), the
//! optimizer's state (`optim.<path>/<i>`), the method's state (`method.teacher.<path>`,
//! `method.queue.keys`, …; see `crate::method::state`), the online linear classifier
//! (`online.linear.*`), and in its metadata the training position, the
//! resolved configuration and the device. Written atomically (temporary file, fsync, rename),
//! so a crash leaves either the previous checkpoint or the new one, never half of one; a CRC-32
//! of the metadata and tensors (metadata `crc32`) makes a file damaged later (a bit flip, a
//! truncated copy) fail to load with a message instead of resuming from wrong weights.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, SafeTensors};

use crate::named_tensors::NamedTensor;
use crate::safetensors_file::{Entry, serialize};

/// Format version written into every checkpoint.
pub const FORMAT: &str = "selfsup-checkpoint-1";

/// Where training stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    /// Epoch being trained (0-based); `step_in_epoch` steps of it are done.
    pub epoch: u64,
    pub step_in_epoch: u64,
    /// Optimizer steps done in total.
    pub global_step: u64,
}

/// Everything a checkpoint holds.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub position: Position,
    pub model: Vec<NamedTensor>,
    pub optimizer_steps: u64,
    pub optimizer: Vec<NamedTensor>,
    /// The method's state beside the weights (teacher, queue, centre), named without the
    /// `method.` prefix; empty for SimCLR.
    pub method: Vec<NamedTensor>,
    /// The online linear classifier and its momentum (`online.linear.*`; see
    /// `crate::train::online_linear`), named without the `online.` prefix; empty without one.
    pub online: Vec<NamedTensor>,
    /// The resolved configuration (TOML) of the run.
    pub config: String,
    /// Free-form facts kept with the weights (device, selfsup version, …).
    pub notes: HashMap<String, String>,
}

/// CRC-32 of the metadata (but the checksum itself) and of every tensor's name, shape and bytes,
/// in name order.
fn checksum<'a>(
    meta: &HashMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "crc32").collect();
    keys.sort();
    for k in keys {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(meta[k].as_bytes());
        h.update(&[0]);
    }
    for (name, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(data);
    }
    format!("{:08x}", h.finalize())
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_bytes(path, &self.to_bytes()?)
    }

    /// The checkpoint file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut entries: Vec<Entry> = self
            .model
            .iter()
            .map(|t| Entry::f32(format!("model.{}", t.name), t.shape.clone(), &t.values))
            .chain(self.optimizer.iter().map(|t| Entry::f32(format!("optim.{}", t.name), t.shape.clone(), &t.values)))
            .chain(self.method.iter().map(|t| Entry::f32(format!("method.{}", t.name), t.shape.clone(), &t.values)))
            .chain(self.online.iter().map(|t| Entry::f32(format!("online.{}", t.name), t.shape.clone(), &t.values)))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut meta = self.notes.clone();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("epoch".into(), self.position.epoch.to_string());
        meta.insert("step_in_epoch".into(), self.position.step_in_epoch.to_string());
        meta.insert("global_step".into(), self.position.global_step.to_string());
        meta.insert("optimizer_steps".into(), self.optimizer_steps.to_string());
        meta.insert("config".into(), self.config.clone());
        let crc = checksum(&meta, entries.iter().map(|e| (e.name.as_str(), e.shape.as_slice(), e.bytes.as_slice())));
        meta.insert("crc32".into(), crc);
        serialize(&entries, meta)
    }

    /// Reads a checkpoint written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        Self::from_bytes(&data, path)
    }

    /// Parses a checkpoint file's bytes (read from `path`, named in errors): how the ranks of a
    /// data-parallel run get rank 0's checkpoint.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<Self> {
        let bad = |why: String| anyhow::anyhow!("{}: not a selfsup checkpoint ({why})", path.display());
        let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("format is {:?}, expected {FORMAT:?}", meta.get("format"))));
        }
        let num = |k: &str| -> Result<u64> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("metadata {k} missing or not a number")))
        };
        let position =
            Position { epoch: num("epoch")?, step_in_epoch: num("step_in_epoch")?, global_step: num("global_step")? };
        let optimizer_steps = num("optimizer_steps")?;
        let config = meta.get("config").cloned().ok_or_else(|| bad("no config in metadata".into()))?;
        let st = SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
        let mut model = Vec::new();
        let mut optimizer = Vec::new();
        let mut method = Vec::new();
        let mut online = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        if let Some(want) = meta.get("crc32") {
            let mut views = Vec::with_capacity(names.len());
            for name in &names {
                views.push((name.as_str(), st.tensor(name).map_err(|e| bad(e.to_string()))?));
            }
            let got = checksum(&meta, views.iter().map(|(n, v)| (*n, v.shape(), v.data())));
            if &got != want {
                return Err(bad(format!(
                    "its contents do not match the checksum written with it ({got} vs {want}): the file was damaged after it was written"
                )));
            }
        }
        for name in names {
            let view = st.tensor(&name).map_err(|e| bad(e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                bail!("{}: tensor {name} is {:?}, expected F32", path.display(), view.dtype());
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let shape = view.shape().to_vec();
            if let Some(n) = name.strip_prefix("model.") {
                model.push(NamedTensor { name: n.to_string(), shape, values });
            } else if let Some(n) = name.strip_prefix("optim.") {
                optimizer.push(NamedTensor { name: n.to_string(), shape, values });
            } else if let Some(n) = name.strip_prefix("method.") {
                method.push(NamedTensor { name: n.to_string(), shape, values });
            } else if let Some(n) = name.strip_prefix("online.") {
                online.push(NamedTensor { name: n.to_string(), shape, values });
            } else {
                return Err(bad(format!("unexpected tensor {name}")));
            }
        }
        let mut notes = meta;
        for k in ["format", "epoch", "step_in_epoch", "global_step", "optimizer_steps", "config", "crc32"] {
            notes.remove(k);
        }
        Ok(Self { position, model, optimizer_steps, optimizer, method, online, config, notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.safetensors");
        let ck = Checkpoint {
            position: Position { epoch: 3, step_in_epoch: 7, global_step: 52 },
            model: vec![NamedTensor {
                name: "a.weight".into(),
                shape: vec![2, 3],
                values: vec![1.0, -2.0, 3.5, 0.0, 1e-7, 9.0],
            }],
            optimizer_steps: 52,
            optimizer: vec![NamedTensor { name: "a.weight/0".into(), shape: vec![6], values: vec![0.5; 6] }],
            method: vec![NamedTensor {
                name: "queue.keys".into(),
                shape: vec![2, 2],
                values: vec![0.25, 1.0, -3.0, 2.0],
            }],
            online: vec![NamedTensor { name: "linear.bias".into(), shape: vec![2], values: vec![0.5, -0.5] }],
            config: "seed = 1\n".into(),
            notes: HashMap::from([("device".to_string(), "flex".to_string())]),
        };
        ck.save(&p).unwrap();
        let back = Checkpoint::load(&p).unwrap();
        assert_eq!(back.position, ck.position);
        assert_eq!(back.model, ck.model);
        assert_eq!(back.optimizer, ck.optimizer);
        assert_eq!(back.method, ck.method);
        assert_eq!(back.online, ck.online);
        assert_eq!(back.config, ck.config);
        assert_eq!(back.notes, ck.notes);
        // One flipped bit anywhere in the tensor data, or a truncated copy, is refused.
        let good = std::fs::read(&p).unwrap();
        for i in [good.len() - 1, good.len() - 20] {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            let e = Checkpoint::from_bytes(&bad, &p).unwrap_err().to_string();
            assert!(e.contains("damaged"), "byte {i}: {e}");
        }
        let e = Checkpoint::from_bytes(&good[..good.len() - 3], &p).unwrap_err().to_string();
        assert!(e.contains("not a selfsup checkpoint"), "{e}");
        std::fs::write(&p, b"garbage").unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.safetensors") && e.contains("not a selfsup checkpoint"), "{e}");
    }
}
