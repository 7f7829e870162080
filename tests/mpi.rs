//! End-to-end over real MPI (`--features mpi`): `mpirun -np 2 selfsup pretrain …` on this
//! machine as a user runs it — two ranks train exactly as one process with the whole batch, a
//! killed or hung rank ends the run within a bounded time naming the rank, the checkpoint then
//! resumes in one process, and ranks started differently refuse to start. Every launch is
//! bounded by a timeout that fails the test.

#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Launch, SMOKE, launch_and_wait, pretrain_args, run, shapes_folder, signal};
use selfsup::checkpoint::Checkpoint;
use selfsup::named_tensors::NamedTensor;
use selfsup::train::metrics;

const BIN: &str = env!("CARGO_BIN_EXE_selfsup");

/// The tests of this file run one at a time: each starts several processes on a 2-core
/// machine, and MPI ranks waiting in a collective spin.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `mpirun` for this machine: root allowed, more ranks than cores allowed, no core binding,
/// one thread per rank, and shared memory without ptrace-based copies (refused in containers).
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"])
        .args(["-x", "RAYON_NUM_THREADS=1", "-x", "SELFSUP_COLLECTIVE_TIMEOUT"])
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("SELFSUP_COLLECTIVE_TIMEOUT", "120")
        .stdin(Stdio::null());
    c
}

/// Losses and model tensors of a finished run.
fn results(out: &Path) -> (Vec<f64>, Vec<NamedTensor>) {
    let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    (m.iter().map(|r| r.loss).collect(), ck.model)
}

/// Two ranks × 32 pairs with synchronized batch norm against one process × 64 pairs, same seed
/// and SGD with momentum: every step's loss within 10⁻⁵ (relative); after 5 steps of the
/// convnet every tensor within 10⁻⁴ and each weight's change from its initial value within
/// 10⁻³ of that change (which a gradient that lost a term fails); after one ResNet-18 step every
/// tensor within 10⁻³ and the whole change within 10⁻³ (L2, relative).
#[test]
fn two_ranks_with_sync_bn_train_as_one_process_with_the_whole_batch() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 4, 80, 16);
    for (arch, steps) in [("convnet", 5), ("resnet18", 1)] {
        let sets = [
            format!("model.arch={arch}"),
            "model.sync_batch_norm=true".into(),
            "train.batch_size=64".into(),
            "train.epochs=1".into(),
            "optim.momentum=0.9".into(),
            "optim.lr=0.05".into(),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let steps_arg = steps.to_string();
        let (one, two) = (d.path().join(format!("one-{arch}")), d.path().join(format!("two-{arch}")));
        let mut single = Command::new(BIN);
        single.args(pretrain_args(&data, &one, &sets)).args(["--stop-after-steps", &steps_arg]);
        single.env("RAYON_NUM_THREADS", "2");
        let (st, err) = launch_and_wait(single, d.path(), "one", Duration::from_secs(300));
        assert!(st.success(), "one process: {err}");
        let mut ranks = mpirun();
        ranks.args(["-np", "2", BIN]).args(pretrain_args(&data, &two, &sets)).args(["--stop-after-steps", &steps_arg]);
        let (st, err) = launch_and_wait(ranks, d.path(), "two", Duration::from_secs(300));
        assert!(st.success(), "two ranks: {err}");

        let (loss1, model1) = results(&one);
        let (loss2, model2) = results(&two);
        assert_eq!(loss1.len(), steps, "{arch}: one line per step");
        assert_eq!(loss2.len(), steps, "{arch}: rank 0 alone writes metrics");
        for (a, b) in loss2.iter().zip(&loss1) {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{arch}: losses {loss2:?} vs {loss1:?}");
        }
        let m = metrics::read(&two.join("metrics.jsonl")).unwrap();
        assert!(m.iter().all(|r| r.world_size == 2), "{arch}: metrics record the world size");
        let device = std::fs::read_to_string(two.join("device.txt")).unwrap();
        assert!(device.contains("2 ranks over MPI"), "{device}");

        // The initial weights, for the changes: the same seed in a run stopped before any step
        // is not possible, so build them as the runs did.
        let init = initial_model(arch);
        let (mut diff2, mut moved2) = (0f64, 0f64);
        for ((a, b), t0) in model2.iter().zip(&model1).zip(&init) {
            assert_eq!(a.name, b.name);
            let worst = a.values.iter().zip(&b.values).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            // ResNet-18's many near-zero pre-activations make rounding flip a few ReLUs, which
            // moves single weights more (measured: 1.6e-4 at most, 3.4e-5 of the whole change).
            let bound = if arch == "convnet" { 1e-4 } else { 1e-3 };
            assert!(worst <= bound, "{arch}: {} differs by {worst}", a.name);
            if !selfsup::named_tensors::is_running_stat(&a.name) {
                let moved = b.values.iter().zip(&t0.values).fold(0f32, |m, (y, z)| m.max((y - z).abs()));
                if arch == "convnet" {
                    assert!(worst <= 1e-3 * moved + 1e-7, "{arch}: {} differs by {worst}; it moved {moved}", a.name);
                }
                diff2 += a.values.iter().zip(&b.values).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
                moved2 += b.values.iter().zip(&t0.values).map(|(y, z)| f64::from(y - z).powi(2)).sum::<f64>();
            }
        }
        let rel = (diff2 / moved2).sqrt();
        eprintln!("{arch}: the weights' changes differ by {rel:.2e} (L2, relative)");
        assert!(rel <= 1e-3, "{arch}: the weights' changes differ by {rel:.2e} (L2, relative)");
    }
}

/// Every method over real MPI: two ranks × 16 pairs with synchronized batch norm against one
/// process × 32 pairs, three SGD steps: every loss within 10⁻⁵ (relative), the weights within
/// 10⁻³ (of 1, or of the tensor's scale when larger), and the method state of rank 0's checkpoint — the teacher, the queue that received both
/// ranks' keys, DINO's centre — within 10⁻³ of the process's.
#[test]
fn every_method_trains_as_two_ranks_over_mpi_as_one_process() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 4, 20, 16);
    for kind in selfsup::method::MethodKind::ALL.into_iter().filter(|k| *k != selfsup::method::MethodKind::Simclr) {
        let name = kind.name();
        let mut sets: Vec<String> =
            ["model.sync_batch_norm=true", "train.batch_size=32", "train.epochs=2", "optim.momentum=0.9"]
                .map(String::from)
                .to_vec();
        sets.extend(common::method_sets(kind));
        if kind == selfsup::method::MethodKind::Moco {
            // Shuffling batch norm splits what synchronized batch norm makes global.
            sets.push("method.shuffle_bn_splits=1".into());
        }
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let (one, two) = (d.path().join(format!("one-{name}")), d.path().join(format!("two-{name}")));
        let mut single = Command::new(BIN);
        single.args(pretrain_args(&data, &one, &sets)).args(["--stop-after-steps", "3"]);
        single.env("RAYON_NUM_THREADS", "2");
        let (st, err) = launch_and_wait(single, d.path(), "one", Duration::from_secs(300));
        assert!(st.success(), "{name}, one process: {err}");
        let mut ranks = mpirun();
        ranks.args(["-np", "2", BIN]).args(pretrain_args(&data, &two, &sets)).args(["--stop-after-steps", "3"]);
        let (st, err) = launch_and_wait(ranks, d.path(), "two", Duration::from_secs(300));
        assert!(st.success(), "{name}, two ranks: {err}");
        let (loss1, _) = results(&one);
        let (loss2, _) = results(&two);
        assert_eq!(loss2.len(), 3, "{name}");
        for (a, b) in loss2.iter().zip(&loss1) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{name}: losses {loss2:?} vs {loss1:?}");
        }
        let (ck1, ck2) = (
            Checkpoint::load(&one.join("checkpoint.safetensors")).unwrap(),
            Checkpoint::load(&two.join("checkpoint.safetensors")).unwrap(),
        );
        assert_eq!(ck1.method.len(), ck2.method.len(), "{name}");
        for (what, a, b) in [("weights", &ck2.model, &ck1.model), ("method state", &ck2.method, &ck1.method)] {
            for (x, y) in a.iter().zip(b.iter()) {
                assert_eq!(x.name, y.name);
                let worst = x.values.iter().zip(&y.values).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                let scale = y.values.iter().fold(1f32, |m, v| m.max(v.abs()));
                assert!(worst <= 1e-3 * scale, "{name} {what}: {} differs by {worst} (scale {scale})", x.name);
            }
        }
        assert_eq!(ck1.notes.get("method.queue_next"), ck2.notes.get("method.queue_next"), "{name}: queue position");
    }
}

/// The weights a run of the smoke configuration with `arch` starts from.
fn initial_model(arch: &str) -> Vec<NamedTensor> {
    let cfg = selfsup::config::Config::load(Some(Path::new(SMOKE)), &[format!("model.arch={arch}")]).unwrap();
    let device = burn::tensor::Device::flex().autodiff();
    device.seed(cfg.seed);
    selfsup::named_tensors::collect(&cfg.encoder(&device))
}

/// PIDs of the selfsup processes whose environment holds `mark` and rank `rank`.
fn rank_pid(mark: &str, rank: usize) -> Option<u32> {
    let want_rank = format!("OMPI_COMM_WORLD_RANK={rank}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
        let has = |s: &str| vars.iter().any(|v| *v == s.as_bytes());
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if has(mark) && has(&want_rank) && exe.file_name().is_some_and(|n| n == "selfsup") {
            return Some(pid);
        }
    }
    None
}

/// Starts a long two-rank run and waits for its first checkpoint; returns the launch and the
/// PID of rank 1.
fn long_run(d: &Path, data: &Path, out: &Path, mark: &str, timeout_s: &str) -> (Launch, u32) {
    let mut ranks = mpirun();
    ranks
        .env("SELFSUP_TEST_MARK", mark)
        .env("SELFSUP_COLLECTIVE_TIMEOUT", timeout_s)
        .args(["-x", "SELFSUP_TEST_MARK", "-np", "2", BIN])
        .args(pretrain_args(data, out, &["train.epochs=1000", "train.batch_size=16"]));
    let launch = Launch::start(ranks, d, mark);
    let t = Instant::now();
    let ck = out.join("checkpoint.safetensors");
    while !ck.exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mark_var = format!("SELFSUP_TEST_MARK={mark}");
    let pid = rank_pid(&mark_var, 1).expect("rank 1's process");
    (launch, pid)
}

/// Global step of a checkpoint file.
fn checkpoint_step(out: &Path) -> u64 {
    Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap().position.global_step
}

/// kill -9 of rank 1 mid-run: the run ends within 60 s, non-zero, naming rank 1; the last
/// checkpoint loads; `--resume` in one process continues from it.
#[test]
fn a_killed_rank_ends_the_run_naming_it_and_the_checkpoint_resumes_in_one_process() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 24, 16);
    let out = d.path().join("run");
    let (launch, pid) = long_run(d.path(), &data, &out, "kill9", "120");
    signal(pid, "-9");
    let t = Instant::now();
    let (st, err) = launch.wait(Duration::from_secs(60));
    assert!(!st.success(), "the run must fail: {err}");
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(err.contains("rank 1"), "the message names rank 1: {err}");
    let step = checkpoint_step(&out);
    assert!(step >= 3, "a checkpoint of at least one epoch (3 steps): {step}");
    let stop = (step + 2).to_string();
    let (o, err) = run(&[
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--stop-after-steps",
        &stop,
    ]);
    assert!(o.status.success(), "resume in one process: {err}");
    assert_eq!(checkpoint_step(&out), step + 2);
}

/// SIGUSR1 to one rank only (as a node's agent may deliver it): every rank stops at the same
/// step, rank 0 writes the checkpoint, and the launch ends with the resumable status (75).
#[test]
fn a_signal_to_one_rank_stops_every_rank_at_one_step_with_a_checkpoint() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 24, 16);
    let out = d.path().join("run");
    let (launch, pid) = long_run(d.path(), &data, &out, "usr1", "120");
    let before = checkpoint_step(&out);
    signal(pid, "-USR1");
    let (st, err) = launch.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(75), "{err}");
    assert!(err.contains("SIGUSR1: finishing this step"), "rank 1 saw it: {err}");
    assert!(err.contains("stopped by a signal on another rank"), "rank 0 reports the stop: {err}");
    assert!(checkpoint_step(&out) > before, "a checkpoint at the stop step");
}

/// A rank that hangs (SIGSTOP) ends the others once they have waited
/// SELFSUP_COLLECTIVE_TIMEOUT in a collective, naming the wait, instead of a silent hang.
#[test]
fn a_hung_rank_ends_the_run_after_the_collective_timeout() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 24, 16);
    let out = d.path().join("run");
    let (launch, pid) = long_run(d.path(), &data, &out, "sigstop", "4");
    signal(pid, "-STOP");
    let (st, err) = launch.wait(Duration::from_secs(60));
    // SAFETY: kill(2) has no memory effects; the rank may be gone already.
    let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert!(!st.success(), "the run must fail: {err}");
    assert!(
        err.contains("rank 0 of 2") && err.contains("waited") && err.contains("SELFSUP_COLLECTIVE_TIMEOUT"),
        "{err}"
    );
    Checkpoint::load(&out.join("checkpoint.safetensors")).expect("the last checkpoint is intact");
}

/// Ranks started with different `--set` values or data folders refuse to start, naming what
/// differs; a global batch the ranks cannot share is refused naming the key.
#[test]
fn ranks_started_differently_refuse_to_start_naming_the_difference() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    shapes_folder(&a, 2, 10, 16);
    shapes_folder(&b, 2, 11, 16);
    let out = d.path().join("run");
    let limit = Duration::from_secs(120);

    let mut cmd = mpirun();
    cmd.args(["-np", "1", BIN]).args(pretrain_args(&a, &out, &["optim.lr=0.1"]));
    cmd.args([":", "-np", "1", BIN]).args(pretrain_args(&a, &out, &["optim.lr=0.2"]));
    let (st, err) = launch_and_wait(cmd, d.path(), "sets", limit);
    assert!(!st.success());
    assert!(err.contains("optim.lr = 0.2 on rank 1 but 0.1 on rank 0"), "{err}");

    let out = d.path().join("run2");
    let mut cmd = mpirun();
    cmd.args(["-np", "1", BIN]).args(pretrain_args(&a, &out, &[]));
    cmd.args([":", "-np", "1", BIN]).args(pretrain_args(&b, &out, &[]));
    let (st, err) = launch_and_wait(cmd, d.path(), "data", limit);
    assert!(!st.success());
    assert!(err.contains("rank 1 reads 22 images") && err.contains("rank 0 reads 20 images"), "{err}");

    let out = d.path().join("run3");
    let mut cmd = mpirun();
    cmd.args(["-np", "3", BIN]).args(pretrain_args(&a, &out, &["train.batch_size=8"]));
    let (st, err) = launch_and_wait(cmd, d.path(), "divide", limit);
    assert!(!st.success());
    assert!(err.contains("train.batch_size = 8") && err.contains("3 ranks"), "{err}");
}

/// The values of a float32 `.npy` file written by `selfsup embed` (format 1.0 header).
fn npy_values(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let header = 10 + u16::from_le_bytes([b[8], b[9]]) as usize;
    b[header..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// `selfsup embed` over two ranks (each extracting its share, rank 0 writing) writes the
/// embeddings one process writes, in the same order.
#[test]
fn embeddings_extracted_over_two_ranks_equal_one_process() {
    let _one_at_a_time = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 3, 7, 16);
    let (one, two) = (d.path().join("one.npy"), d.path().join("two.npy"));
    let args = |out: &Path| -> Vec<String> {
        ["embed", "--baseline", "random-init", "--config", SMOKE, "--batch-size", "4", "--data"]
            .iter()
            .map(|s| s.to_string())
            .chain([data.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().to_string()])
            .collect()
    };
    let (o, err) = run(&args(&one));
    assert!(o.status.success(), "{err}");
    let mut cmd = mpirun();
    cmd.args(["-np", "2", BIN]).args(args(&two));
    let (st, err) = launch_and_wait(cmd, d.path(), "embed", Duration::from_secs(120));
    assert!(st.success(), "{err}");
    let (a, b) = (npy_values(&one), npy_values(&two));
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len() % 21, 0, "21 images");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-5 * scale, "embeddings differ by {worst} (scale {scale})");
    assert_eq!(std::fs::read(one.with_extension("csv")).unwrap(), std::fs::read(two.with_extension("csv")).unwrap());
}
