//! Shared helpers of the end-to-end tests: the binary, and small synthetic image folders.

#![allow(dead_code)]

pub mod tfevents;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn selfsup() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
}

/// Runs the binary with `args`; returns the output (stderr decoded).
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Output, String) {
    let out = selfsup().args(args).output().expect("run selfsup");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// A labelled folder: `per_class` images of `size`×`size` pixels for each of `classes` classes.
/// Class `c` is a bright blob of a class colour at a random place on a noisy background, so
/// classes are learnable but not trivially by the mean colour alone.
pub fn shapes_folder(root: &Path, classes: usize, per_class: usize, size: u32) {
    let mut s: u64 = 0x1234_5678;
    let mut rnd = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    for c in 0..classes {
        let dir = root.join(format!("class{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let (cx, cy) = (rnd() % size, rnd() % size);
            let radius = (size / 5 + rnd() % (size / 4)) as i64;
            // The class sets the base colour; each image shifts it, so instances differ too.
            let base = [c * 97 % 256, c * 53 % 256, 255 - c * 71 % 256];
            let colour = base.map(|b| (b as i64 + (rnd() % 81) as i64 - 40).clamp(0, 255) as u8);
            let mut img = image::RgbImage::new(size, size);
            for (x, y, p) in img.enumerate_pixels_mut() {
                let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
                let noise = (rnd() % 60) as u8;
                *p = if d2 < radius.pow(2) { image::Rgb(colour) } else { image::Rgb([noise, noise, noise]) };
            }
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// A started process whose stderr goes to a file (no pipe to fill while it runs).
pub struct Launch {
    pub child: Child,
    stderr: PathBuf,
}

impl Launch {
    pub fn start(mut cmd: Command, dir: &Path, name: &str) -> Launch {
        let stderr = dir.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&stderr).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().expect("start the command");
        Launch { child, stderr }
    }

    /// What it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether it has ended (without waiting).
    pub fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits at most `limit`; a process still running then is killed and fails the test.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&self.stderr).unwrap_or_default());
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                panic!("still running after {limit:?} (killed): {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn launch_and_wait(cmd: Command, dir: &Path, name: &str, limit: Duration) -> (ExitStatus, String) {
    Launch::start(cmd, dir, name).wait(limit)
}

/// Sends `sig` (as `kill` takes it: "-9", "-TERM") to `pid`, through the system call (no
/// `kill` program needed).
pub fn signal(pid: u32, sig: &str) {
    let number = match sig {
        "-9" | "-KILL" => libc::SIGKILL,
        "-TERM" => libc::SIGTERM,
        "-INT" => libc::SIGINT,
        "-USR1" => libc::SIGUSR1,
        "-STOP" => libc::SIGSTOP,
        "-CONT" => libc::SIGCONT,
        other => panic!("signal {other}: not one the tests use"),
    };
    // SAFETY: kill(2) with a process id and a signal number has no memory effects.
    let rc = unsafe { libc::kill(pid as libc::pid_t, number) };
    assert_eq!(rc, 0, "kill {sig} {pid}: {}", std::io::Error::last_os_error());
}

/// `selfsup embed` of `data` with the encoder in `model` to `npy` (on flex).
pub fn embed(model: &Path, data: &Path, npy: &Path) -> (Output, String) {
    run(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
        "--backend",
        "flex",
        "-q",
    ])
}

/// An `.npy` file read the way numpy's `format.read_array` reads one: magic, version 1.0, a
/// little-endian header length, a Python dict literal with exactly `descr`, `fortran_order` and
/// `shape`, padded with spaces to a multiple of 64 bytes and ended by a newline; then the data.
pub fn read_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY", "magic");
    assert_eq!((b[6], b[7]), (1, 0), "format version 1.0");
    let len = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "header padded to 64 bytes");
    let header = std::str::from_utf8(&b[10..10 + len]).unwrap();
    assert!(header.ends_with('\n') && header.is_ascii());
    let dict = header.trim_end().strip_prefix('{').and_then(|h| h.strip_suffix('}')).expect("a dict literal");
    // Split the top-level items (the shape tuple holds a comma of its own).
    let mut items = BTreeMap::new();
    let (mut depth, mut start) = (0, 0);
    let bytes = dict.as_bytes();
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(b',');
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                let item = dict[start..i.min(dict.len())].trim();
                if !item.is_empty() {
                    let (k, v) = item.split_once(':').expect("key: value");
                    items.insert(k.trim().trim_matches('\'').to_string(), v.trim().to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    assert_eq!(items.keys().collect::<Vec<_>>(), ["descr", "fortran_order", "shape"]);
    assert_eq!(items["descr"], "'<f4'", "little-endian float32");
    assert_eq!(items["fortran_order"], "False", "C order");
    let dims: Vec<usize> = items["shape"]
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(dims.len(), 2, "[images, dim]");
    let data: Vec<f32> = b[10 + len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data.len(), dims[0] * dims[1], "data size from the shape");
    (dims[0], dims[1], data)
}

/// The smoke configuration (seconds of training on a tiny folder).
pub const SMOKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/smoke.toml");

/// `pretrain --data DATA --out OUT --config SMOKE` with `--set` for each of `sets`.
pub fn pretrain_args(data: &Path, out: &Path, sets: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["pretrain", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", SMOKE]
            .map(String::from)
            .to_vec();
    for s in sets {
        a.push("--set".into());
        a.push(s.to_string());
    }
    a
}

/// The `--set`s that make `kind` small enough for these tests (the smoke configuration's
/// heads; a queue of 24 that wraps, DINO with two small views and its first epoch's prototypes
/// frozen across the stop).
pub fn method_sets(kind: selfsup::method::MethodKind) -> Vec<String> {
    let mut sets = vec![format!("method.kind={}", kind.name())];
    let keys = kind.keys();
    for (key, value) in [
        ("predictor", "method.predictor.hidden_dim=32"),
        ("queue_size", "method.queue_size=24"),
        ("prototypes", "method.prototypes=32"),
    ] {
        if keys.contains(&key) {
            sets.push(value.to_string());
        }
    }
    if kind == selfsup::method::MethodKind::Vicreg {
        // Its 25× terms diverge at the smoke configuration's rate.
        sets.push("optim.lr=0.01".into());
    }
    if kind == selfsup::method::MethodKind::Dino {
        sets.push("augment.small_views=2".into());
        sets.push("augment.small.size=8".into());
    }
    sets
}
