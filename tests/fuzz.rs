//! Fuzzed configuration and checkpoint readers. Configurations: random TOML documents (real
//! and unknown keys, values of every type and at their extremes) given as a table, as a file
//! and as `--set` overrides, random raw `--set` strings, and byte-level mutations of
//! `configs/smoke.toml`. Checkpoints: a real model's checkpoint with its header length set to
//! extremes, digits of its JSON header (shapes, offsets, metadata) changed or added, and bytes
//! mutated anywhere; what loads is then applied to the model and the optimizer, as resuming
//! does; `pretrain --init` files (PyTorch-named backbones) mutated the same way. Each input must
//! load, or end in an error naming the key or the file; none may panic, hang or allocate past
//! its bound.
//!
//! The machinery (mutations, allocator, watchdog, runner) is shared with the datasets crate's
//! fuzz test: see `datasets/tests/fuzz_support/mod.rs`. `SELFSUP_FUZZ_CASES=N` runs N cases
//! per reader instead of the default; each reader prints how many it ran.

#[path = "../datasets/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use fuzz_support::{Mutation, Outcome, Reader, apply, apply_all, fuzz, mutation, mutations, replace, serial};
use proptest::prelude::*;
use proptest::sample::Index;
use selfsup::checkpoint::{Checkpoint, Position};
use selfsup::config::Config;
use selfsup::model::Encoder;
use selfsup::named_tensors::{self, NamedTensor};
use selfsup::optim::Optimizer;
use toml::{Table, Value};

fn smoke_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml")
}

// ------------------------------------------------------------------------------------------
// Configurations

const CONFIG_CASES: u32 = 5_000;

/// A configuration is a few KiB of TOML and no value in it sizes an allocation while loading:
/// 64 MiB is far above what a case needs and far below what a value trusted as a size takes.
const CONFIG_ALLOC_BOUND: usize = 64 << 20;

/// The configuration's real keys: every leaf (dotted path and default value) and every section.
struct Keys {
    leaves: Vec<(String, Value)>,
    sections: Vec<String>,
}

/// The keys of the default configuration as written by `to_toml`, plus the optional ones it
/// leaves out when unset.
fn real_keys() -> Keys {
    let table: Table = toml::from_str(&Config::default().to_toml()).unwrap();
    let mut keys = Keys {
        leaves: vec![
            ("augment.preset".into(), Value::String("imagenet".into())),
            ("data.load_size".into(), Value::Integer(64)),
            ("data.limit".into(), Value::Integer(1000)),
        ],
        sections: Vec::new(),
    };
    walk(&table, "", &mut keys);
    keys
}

fn walk(table: &Table, prefix: &str, keys: &mut Keys) {
    for (k, v) in table {
        let path = format!("{prefix}{k}");
        match v {
            Value::Table(t) => {
                walk(t, &format!("{path}."), keys);
                keys.sections.push(path);
            }
            _ => keys.leaves.push((path, v.clone())),
        }
    }
}

const INTS: &[i64] =
    &[0, 1, -1, 2, 7, 255, 256, 4096, 4097, 65_535, 1 << 31, (1 << 32) + 1, 1 << 53, i64::MAX, i64::MIN];
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    0.999_999_999_999_999_9,
    1.000_000_000_000_000_2,
    1e-300,
    5e-324,
    1e308,
    -1e308,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];
/// Valid names of every enumeration, byte sizes (some beyond `u64`), and junk.
const STRINGS: &[&str] = &[
    "",
    "cifar",
    "imagenet",
    "huge",
    "convnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg",
    "sgd",
    "lars",
    "adamw",
    "ntxent",
    "supcon",
    "none",
    "linear",
    "sqrt",
    "auto",
    "flex",
    "ndarray",
    "wgpu",
    "cuda",
    "8GiB",
    "500MB",
    "1.5 gb",
    "1e19",
    "1e30GiB",
    "20000000TiB",
    "8388608TiB",
    "-1",
    "nan",
    "inf",
    "12 parsecs",
    "0x10",
    "é",
    "\0",
];

/// Any TOML value: scalars of every type (extremes included) and small arrays and tables.
fn toml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        prop::sample::select(INTS).prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Integer),
        prop::sample::select(FLOATS).prop_map(Value::Float),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_string())),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|entries| Value::Table(entries.into_iter().collect())),
        ]
    })
}

/// A key of a generated document.
#[derive(Clone, Debug)]
enum KeyGen {
    /// A real leaf.
    Known(Index),
    /// An unknown key in a real section.
    InSection(Index, String),
    /// An unknown top-level key.
    TopLevel(String),
    /// A key below a real leaf (which is not a table).
    UnderLeaf(Index, String),
}

/// A value of a generated document.
#[derive(Clone, Debug)]
enum ValueGen {
    /// A value of the key's own type (for a known key), picked by the number: the default, an
    /// extreme, or a plausible setting.
    LikeDefault(u64),
    Any(Value),
}

#[derive(Clone, Copy, Debug)]
enum DocRoute {
    Table,
    File,
    Sets,
}

#[derive(Clone, Debug)]
enum ConfigCase {
    /// A generated document, given to `from_table`, written to a file, or as `--set`s.
    Document { entries: Vec<(KeyGen, ValueGen)>, route: DocRoute },
    /// Raw `--set` strings.
    RawSets(Vec<String>),
    /// `configs/smoke.toml` mutated byte by byte, loaded as a file with some `--set`s.
    MutatedFile { mutations: Vec<Mutation>, sets: Vec<String> },
}

fn key_gen() -> impl Strategy<Value = KeyGen> {
    prop_oneof![
        6 => any::<Index>().prop_map(KeyGen::Known),
        1 => (any::<Index>(), "[a-z_]{1,10}").prop_map(|(i, name)| KeyGen::InSection(i, name)),
        1 => "[a-z_]{1,10}".prop_map(KeyGen::TopLevel),
        1 => (any::<Index>(), "[a-z_]{1,10}").prop_map(|(i, name)| KeyGen::UnderLeaf(i, name)),
    ]
}

fn value_gen() -> impl Strategy<Value = ValueGen> {
    prop_oneof![3 => any::<u64>().prop_map(ValueGen::LikeDefault), 1 => toml_value().prop_map(ValueGen::Any)]
}

/// A `--set` string: mostly `key=value`-shaped, sometimes anything.
fn set_string() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_.]{0,16}=[ -~]{0,12}", 1 => "[ -~]{0,24}"]
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    let route = prop_oneof![Just(DocRoute::Table), Just(DocRoute::File), Just(DocRoute::Sets)];
    prop_oneof![
        4 => (prop::collection::vec((key_gen(), value_gen()), 0..6), route)
            .prop_map(|(entries, route)| ConfigCase::Document { entries, route }),
        1 => prop::collection::vec(set_string(), 1..4).prop_map(ConfigCase::RawSets),
        2 => (mutations(), prop::collection::vec(set_string(), 0..2))
            .prop_map(|(mutations, sets)| ConfigCase::MutatedFile { mutations, sets }),
    ]
}

/// A value of `default`'s type, picked by `r`.
fn like(default: &Value, r: u64) -> Value {
    if r % 5 == 0 {
        return default.clone();
    }
    let pick = |n: usize| (r / 5 % n as u64) as usize;
    match default {
        Value::Integer(_) => Value::Integer(INTS[pick(INTS.len())]),
        Value::Float(_) => Value::Float(FLOATS[pick(FLOATS.len())]),
        Value::Boolean(_) => Value::Boolean(r % 2 == 0),
        Value::String(_) => Value::String(STRINGS[pick(STRINGS.len())].to_string()),
        Value::Array(items) => {
            Value::Array(items.iter().enumerate().map(|(k, v)| like(v, r.rotate_right(8 * k as u32))).collect())
        }
        other => other.clone(),
    }
}

/// The document's entries as dotted keys and values.
fn materialize(keys: &Keys, entries: &[(KeyGen, ValueGen)]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|(key, value)| {
            let (path, default) = match key {
                KeyGen::Known(i) => {
                    let (path, default) = i.get(&keys.leaves);
                    (path.clone(), Some(default))
                }
                KeyGen::InSection(i, name) => (format!("{}.{name}", i.get(&keys.sections)), None),
                KeyGen::TopLevel(name) => (name.clone(), None),
                KeyGen::UnderLeaf(i, name) => (format!("{}.{name}", i.get(&keys.leaves).0), None),
            };
            let value = match (value, default) {
                (ValueGen::LikeDefault(r), Some(d)) => like(d, *r),
                (ValueGen::LikeDefault(r), None) => like(&Value::Integer(0), *r),
                (ValueGen::Any(v), _) => v.clone(),
            };
            (path, value)
        })
        .collect()
}

/// Sets `path` (dotted) in `table`, replacing whatever stands in the way with tables.
fn insert_dotted(table: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = table;
    for p in parts {
        let slot = t.entry(p).or_insert_with(|| Value::Table(Table::new()));
        if !slot.is_table() {
            *slot = Value::Table(Table::new());
        }
        t = slot.as_table_mut().expect("made a table above");
    }
    t.insert(last.to_string(), value);
}

fn table_of(pairs: &[(String, Value)]) -> Table {
    let mut table = Table::new();
    for (path, value) in pairs {
        insert_dotted(&mut table, path, value.clone());
    }
    table
}

/// A loaded configuration is valid and survives `to_toml` and `from_table` unchanged (a run
/// writes it to its folder and resumes from it).
fn round_trips(cfg: &Config) -> Result<(), String> {
    cfg.validate().map_err(|e| format!("loaded, yet does not validate: {e:#}"))?;
    let text = cfg.to_toml();
    let table: Table = toml::from_str(&text).map_err(|e| format!("the resolved config does not parse back: {e}"))?;
    let back = Config::from_table(table).map_err(|e| format!("the resolved config does not load back: {e:#}"))?;
    if &back != cfg {
        return Err(format!("the resolved config changes on a round trip:\n{text}"));
    }
    Ok(())
}

/// Ok: the configuration round-trips. Err: the message names the file, a key or a `--set`.
fn check_config(result: anyhow::Result<Config>, file: Option<&Path>) -> Result<Outcome, String> {
    match result {
        Ok(cfg) => round_trips(&cfg).map(|()| Outcome::Accepted),
        Err(e) => {
            let msg = format!("{e:#}");
            let names_file = file.is_some_and(|f| msg.contains(&f.display().to_string()));
            let names_key = msg.strip_prefix("invalid config: ").is_some_and(|rest| !rest.trim().is_empty());
            if names_file || names_key || msg.starts_with("--set ") {
                Ok(Outcome::Refused)
            } else {
                Err(format!("the error names neither the file nor a key: {msg:?}"))
            }
        }
    }
}

fn load_file(text: &[u8], sets: &[String]) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzzed.toml");
    std::fs::write(&path, text).unwrap();
    check_config(Config::load(Some(path.as_path()), sets), Some(path.as_path()))
}

fn config_case_outcome(case: &ConfigCase, keys: &Keys, smoke: &str) -> Result<Outcome, String> {
    match case {
        ConfigCase::Document { entries, route } => {
            let pairs = materialize(keys, entries);
            match route {
                DocRoute::Table => check_config(Config::from_table(table_of(&pairs)), None),
                DocRoute::File => {
                    let table = table_of(&pairs);
                    match toml::to_string(&table) {
                        Ok(text) => load_file(text.as_bytes(), &[]),
                        // Not every table has a TOML text; it still goes through `from_table`.
                        Err(_) => check_config(Config::from_table(table), None),
                    }
                }
                DocRoute::Sets => {
                    let sets: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    check_config(Config::load(None, &sets), None)
                }
            }
        }
        ConfigCase::RawSets(sets) => check_config(Config::load(None, sets), None),
        ConfigCase::MutatedFile { mutations, sets } => load_file(&apply_all(smoke.as_bytes(), mutations), sets),
    }
}

#[test]
fn configs() {
    let serial = serial();
    let keys = real_keys();
    let smoke = std::fs::read_to_string(smoke_path()).unwrap();
    let reader = Reader { name: "config", default_cases: CONFIG_CASES, alloc_bound: CONFIG_ALLOC_BOUND };
    fuzz(&serial, &reader, config_case(), |case| config_case_outcome(case, &keys, &smoke));
}

// ------------------------------------------------------------------------------------------
// Checkpoints

const CHECKPOINT_CASES: u32 = 5_000;

/// Header lengths: zero, tiny, safetensors' 100 MB limit and one past it, and huge values a
/// reader must not allocate.
const HEADER_LENGTHS: &[u64] =
    &[0, 1, 2, 7, 8, 100_000_000, 100_000_001, u32::MAX as u64, 1 << 40, i64::MAX as u64, u64::MAX];

/// One change to a checkpoint (a safetensors file: an 8-byte little-endian header length, a
/// JSON header, then the raw tensor data).
#[derive(Clone, Debug)]
enum CkMutation {
    /// Set the header length to one of [`HEADER_LENGTHS`].
    HeaderLength(u64),
    /// Move the header length by this many bytes.
    HeaderShift(i64),
    /// Replace a decimal digit of the JSON header (a shape, an offset, a metadata number).
    Digit { which: Index, digit: u8 },
    /// Insert a digit before a digit of the JSON header (a larger number), and move the header
    /// length along so that the JSON still parses.
    ExtraDigit { which: Index, digit: u8 },
    /// A byte-level mutation of the JSON header, then optionally the header length set to fit.
    InHeader { mutation: Mutation, fix_length: bool },
    /// A byte-level mutation anywhere in the file.
    Anywhere(Mutation),
}

fn checkpoint_mutation() -> impl Strategy<Value = CkMutation> {
    prop_oneof![
        1 => prop::sample::select(HEADER_LENGTHS).prop_map(CkMutation::HeaderLength),
        1 => (-16i64..=16).prop_map(CkMutation::HeaderShift),
        3 => (any::<Index>(), 0u8..10).prop_map(|(which, digit)| CkMutation::Digit { which, digit }),
        2 => (any::<Index>(), 0u8..10).prop_map(|(which, digit)| CkMutation::ExtraDigit { which, digit }),
        4 => (mutation(), any::<bool>())
            .prop_map(|(mutation, fix_length)| CkMutation::InHeader { mutation, fix_length }),
        2 => mutation().prop_map(CkMutation::Anywhere),
    ]
}

#[derive(Clone, Debug)]
struct CkCase {
    mutations: Vec<CkMutation>,
    /// Through `Checkpoint::load` on a file rather than `from_bytes`.
    through_file: bool,
    /// Apply what loads to the model and the optimizer.
    apply: bool,
}

fn checkpoint_case() -> impl Strategy<Value = CkCase> {
    (prop::collection::vec(checkpoint_mutation(), 1..6), prop::bool::weighted(0.1), any::<bool>())
        .prop_map(|(mutations, through_file, apply)| CkCase { mutations, through_file, apply })
}

/// The JSON header's byte range, from the 8-byte length (clamped to the file).
fn header_range(bytes: &[u8]) -> Range<usize> {
    let Some(length) = bytes.get(..8) else {
        return bytes.len()..bytes.len();
    };
    let n = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    let end = usize::try_from(n).map_or(usize::MAX, |n| n.saturating_add(8));
    8..end.min(bytes.len())
}

fn set_header_length(bytes: &mut [u8], n: u64) {
    if let Some(length) = bytes.get_mut(..8) {
        length.copy_from_slice(&n.to_le_bytes());
    }
}

/// The index of the `which`-th digit of the JSON header, if it has digits.
fn header_digit(bytes: &[u8], which: &Index) -> Option<usize> {
    let digits: Vec<usize> = header_range(bytes).filter(|&i| bytes[i].is_ascii_digit()).collect();
    (!digits.is_empty()).then(|| *which.get(&digits))
}

fn apply_checkpoint_mutation(bytes: &mut Vec<u8>, m: &CkMutation) {
    match m {
        CkMutation::HeaderLength(n) => set_header_length(bytes, *n),
        CkMutation::HeaderShift(d) => {
            let length = header_range(bytes).len() as u64;
            set_header_length(bytes, length.wrapping_add_signed(*d));
        }
        CkMutation::Digit { which, digit } => {
            if let Some(i) = header_digit(bytes, which) {
                bytes[i] = b'0' + digit % 10;
            }
        }
        CkMutation::ExtraDigit { which, digit } => {
            let length = header_range(bytes).len() as u64;
            if let Some(i) = header_digit(bytes, which) {
                replace(bytes, i..i, &[b'0' + digit % 10]);
                set_header_length(bytes, length + 1);
            }
        }
        CkMutation::InHeader { mutation, fix_length } => {
            let range = header_range(bytes);
            let mut header = bytes[range.clone()].to_vec();
            apply(&mut header, mutation);
            if *fix_length {
                set_header_length(bytes, header.len() as u64);
            }
            replace(bytes, range, &header);
        }
        CkMutation::Anywhere(mutation) => apply(bytes, mutation),
    }
}

/// A checkpoint of `model` with a little optimizer state (for its first three tensors).
fn seed_checkpoint(cfg: &Config, model: &Encoder) -> Checkpoint {
    let tensors = named_tensors::collect(model);
    let optimizer = tensors
        .iter()
        .take(3)
        .map(|t| NamedTensor {
            name: format!("{}/0", t.name),
            shape: vec![t.values.len()],
            values: vec![0.25; t.values.len()],
        })
        .collect();
    Checkpoint {
        position: Position { epoch: 1, step_in_epoch: 2, global_step: 12 },
        model: tensors,
        optimizer_steps: 12,
        optimizer,
        method: Vec::new(),
        online: Vec::new(),
        config: cfg.to_toml(),
        notes: HashMap::from([("device".to_string(), "flex".to_string())]),
    }
}

/// Every tensor's values fill its shape.
fn check_checkpoint(ck: &Checkpoint) -> Result<(), String> {
    for t in ck.model.iter().chain(&ck.optimizer) {
        let elements = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(t.values.len()) {
            return Err(format!("tensor {} has shape {:?} and {} values", t.name, t.shape, t.values.len()));
        }
    }
    Ok(())
}

/// What resuming does with a loaded checkpoint: the weights into the model, the state into an
/// optimizer. Either may refuse (a checkpoint of another model), with a message; neither may
/// panic.
fn use_checkpoint(ck: &Checkpoint, model: &Encoder, cfg: &Config, device: &Device) -> Result<Outcome, String> {
    let applied = named_tensors::apply(model.clone(), &ck.model).map(drop);
    let mut optim = Optimizer::new(cfg.optim.clone());
    let imported = optim
        .import_state(ck.optimizer_steps, &ck.optimizer, device)
        .and_then(|()| optim.check_fits(&named_tensors::collect(model)));
    let mut outcome = Outcome::Accepted;
    for result in [applied, imported] {
        if let Err(e) = result {
            if format!("{e:#}").trim().is_empty() {
                return Err("refused with an empty message".into());
            }
            outcome = Outcome::Refused;
        }
    }
    Ok(outcome)
}

/// A refusal must name the file it refuses.
fn refused_naming(e: &anyhow::Error, path: &Path) -> Result<Outcome, String> {
    let msg = format!("{e:#}");
    if msg.contains(&path.display().to_string()) {
        Ok(Outcome::Refused)
    } else {
        Err(format!("the error does not name the file: {msg:?}"))
    }
}

/// The smoke configuration, its model (built once: the cases clone it) and the flex device.
fn smoke_model() -> (Config, Encoder, Device) {
    let cfg = Config::load(Some(smoke_path().as_path()), &[]).unwrap();
    let device = Device::flex();
    let model = cfg.model.init(&device);
    (cfg, model, device)
}

#[test]
fn checkpoints() {
    let serial = serial();
    let (cfg, model, device) = smoke_model();
    let dir = tempfile::tempdir().unwrap();
    let seed_path = dir.path().join("seed.safetensors");
    seed_checkpoint(&cfg, &model).save(&seed_path).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    // The seed loads and fits (which also warms burn up outside the measured cases).
    let ck = Checkpoint::load(&seed_path).unwrap();
    assert_eq!(use_checkpoint(&ck, &model, &cfg, &device), Ok(Outcome::Accepted));

    // A case holds the mutated file (twice when read from disk), its tensors as floats, and
    // when applied a copy of the model's tensors by name, the new tensors and the model's
    // clone: under 12 times the file. 64 MiB more covers burn and the optimizer. A reader
    // allocating a declared header length (up to 2^64 bytes) would be far over.
    let alloc_bound = 12 * seed.len() + (64 << 20);
    let path = dir.path().join("fuzzed.safetensors");
    let reader = Reader { name: "checkpoint", default_cases: CHECKPOINT_CASES, alloc_bound };
    fuzz(&serial, &reader, checkpoint_case(), |case| {
        let mut bytes = seed.clone();
        for m in &case.mutations {
            apply_checkpoint_mutation(&mut bytes, m);
        }
        let loaded = if case.through_file {
            std::fs::write(&path, &bytes).unwrap();
            Checkpoint::load(&path)
        } else {
            Checkpoint::from_bytes(&bytes, &path)
        };
        match loaded {
            Ok(ck) => {
                check_checkpoint(&ck)?;
                if case.apply {
                    use_checkpoint(&ck, &model, &cfg, &device)?;
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => refused_naming(&e, &path),
        }
    });
}

/// One change to a checkpoint's tensors after loading: what a checkpoint of another model or
/// of another version brings. (Mutated files rarely load, since the checksum refuses them, so
/// this reaches `apply` and `import_state` directly.) Values always fill their shape, as
/// loading guarantees.
#[derive(Clone, Debug)]
enum TensorMutation {
    /// Mutate the bytes of a tensor's name (made UTF-8 again lossily).
    Rename {
        which: Index,
        mutation: Mutation,
    },
    /// Give a tensor another shape (rank 0 to 4, sides 0 to 32), its values resized to fit.
    Reshape {
        which: Index,
        shape: Vec<usize>,
    },
    /// Reverse a tensor's shape (same values, other layout).
    Transpose {
        which: Index,
    },
    Remove {
        which: Index,
    },
    /// Give tensor `to` the shape and values of tensor `from`.
    Alias {
        from: Index,
        to: Index,
    },
}

fn tensor_mutation() -> impl Strategy<Value = TensorMutation> {
    prop_oneof![
        (any::<Index>(), mutation()).prop_map(|(which, mutation)| TensorMutation::Rename { which, mutation }),
        (any::<Index>(), prop::collection::vec(0usize..33, 0..5))
            .prop_map(|(which, shape)| TensorMutation::Reshape { which, shape }),
        any::<Index>().prop_map(|which| TensorMutation::Transpose { which }),
        any::<Index>().prop_map(|which| TensorMutation::Remove { which }),
        (any::<Index>(), any::<Index>()).prop_map(|(from, to)| TensorMutation::Alias { from, to }),
    ]
}

#[derive(Clone, Debug)]
struct TensorCase {
    /// Mutate the optimizer's tensors rather than the model's.
    optimizer: bool,
    mutations: Vec<TensorMutation>,
}

fn tensor_case() -> impl Strategy<Value = TensorCase> {
    (any::<bool>(), prop::collection::vec(tensor_mutation(), 1..5))
        .prop_map(|(optimizer, mutations)| TensorCase { optimizer, mutations })
}

fn apply_tensor_mutation(tensors: &mut Vec<NamedTensor>, m: &TensorMutation) {
    if tensors.is_empty() {
        return;
    }
    match m {
        TensorMutation::Rename { which, mutation } => {
            let t = which.get_mut(tensors);
            let name = apply_all(t.name.as_bytes(), std::slice::from_ref(mutation));
            t.name = String::from_utf8_lossy(&name).into_owned();
        }
        TensorMutation::Reshape { which, shape } => {
            let t = which.get_mut(tensors);
            t.values.resize(shape.iter().product(), 0.5);
            t.shape = shape.clone();
        }
        TensorMutation::Transpose { which } => which.get_mut(tensors).shape.reverse(),
        TensorMutation::Remove { which } => {
            tensors.remove(which.index(tensors.len()));
        }
        TensorMutation::Alias { from, to } => {
            let source = from.get(tensors).clone();
            let target = to.get_mut(tensors);
            target.shape = source.shape;
            target.values = source.values;
        }
    }
}

#[test]
fn checkpoint_tensors_that_do_not_fit() {
    let serial = serial();
    let (cfg, model, device) = smoke_model();
    let seed = seed_checkpoint(&cfg, &model);
    assert_eq!(use_checkpoint(&seed, &model, &cfg, &device), Ok(Outcome::Accepted));
    // A case holds the checkpoint's copy, `apply`'s copy by name, the new tensors and the
    // model's clone, and at most 1.2 M values of a reshaped tensor: well under 12 times the
    // tensors' bytes, plus 64 MiB for burn and the optimizer.
    let bytes: usize = seed.model.iter().chain(&seed.optimizer).map(|t| 4 * t.values.len()).sum();
    let reader = Reader { name: "checkpoint-tensors", default_cases: 1_000, alloc_bound: 12 * bytes + (64 << 20) };
    fuzz(&serial, &reader, tensor_case(), |case| {
        let mut ck = seed.clone();
        let tensors = if case.optimizer { &mut ck.optimizer } else { &mut ck.model };
        for m in &case.mutations {
            apply_tensor_mutation(tensors, m);
        }
        use_checkpoint(&ck, &model, &cfg, &device)
    });
}

/// `pretrain --init` files: the smoke convnet's backbone written in PyTorch names (as `export
/// --format torchvision` writes it, `num_batches_tracked` included), mutated like the
/// checkpoints, read by `read_backbone` for that model and, when read, loaded into it. Each must
/// load or be refused with an error naming the file.
#[test]
fn init_files() {
    let serial = serial();
    let (cfg, model, _) = smoke_model();
    let dir = tempfile::tempdir().unwrap();
    let seed_path = dir.path().join("seed.safetensors");
    let tensors = named_tensors::collect(&model);
    selfsup::interop::torch_file::write(&seed_path, cfg.model.arch, &tensors, 7, HashMap::new()).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    let expected: Vec<NamedTensor> = tensors.into_iter().filter(|t| t.name.starts_with("backbone.")).collect();
    let init = |path: &Path| selfsup::interop::torch_file::init_backbone(model.clone(), path, cfg.model.arch);
    assert!(init(&seed_path).is_ok(), "the seed file initializes the model");

    // The file (read once), its tensors as floats and the model's clone with its new tensors:
    // well under 8 times the file, plus 64 MiB for burn.
    let alloc_bound = 8 * seed.len() + (64 << 20);
    let path = dir.path().join("fuzzed.safetensors");
    let reader = Reader { name: "init", default_cases: CHECKPOINT_CASES, alloc_bound };
    fuzz(&serial, &reader, checkpoint_case(), |case| {
        let mut bytes = seed.clone();
        for m in &case.mutations {
            apply_checkpoint_mutation(&mut bytes, m);
        }
        std::fs::write(&path, &bytes).unwrap();
        let result = if case.apply {
            init(&path).map(drop)
        } else {
            selfsup::interop::torch_file::read_backbone(&path, cfg.model.arch, &expected).map(drop)
        };
        match result {
            Ok(()) => Ok(Outcome::Accepted),
            Err(e) => refused_naming(&e, &path),
        }
    });
}
