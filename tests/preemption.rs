//! End-to-end: runs that survive what clusters do to them, driven through the real binary with
//! real signals — SIGTERM at a random step checkpoints and resumes to the uninterrupted run's
//! weights; kill -9 at random points of a run with step checkpoints (streamed from WebDataset
//! shards), restarted each time with the same command and `--resume=auto`, ends bit-identical; kept checkpoints; a damaged or
//! truncated checkpoint is refused naming the good one; a full disk during a checkpoint leaves
//! the previous one; a second run into a live run's folder is refused; `--resume` with the
//! run's own `--config`/`--set` is accepted and with others refused, listing the keys.
//! Every wait is bounded by a timeout that fails the test.

mod common;

use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Launch, SMOKE, method_sets, run, selfsup, shapes_folder, signal, tfevents};
use selfsup::checkpoint::Checkpoint;
use selfsup::method::MethodKind;
use selfsup::named_tensors::NamedTensor;
use selfsup::train::metrics;

/// The exit status of a run stopped by a signal after its checkpoint (README, `pretrain`).
const RESUMABLE: i32 = 75;

/// A small, deterministic random source for the test's choices (printed, to reproduce).
fn choices(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut s = seed;
    move |n| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) % n
    }
}

/// A seed that differs between runs of the test (so many runs cover many points), printed.
fn test_seed() -> u64 {
    let seed = std::env::var("SELFSUP_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
    });
    eprintln!("SELFSUP_TEST_SEED={seed}");
    seed
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

/// 40 images of 16 px: 5 steps of 8 per epoch with the smoke configuration.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    shapes_folder(&data, 2, 20, 16);
    Fixture { _dir: dir, root, data }
}

/// The fixture's images packed by `selfsup pack` into shards of a few images each, which
/// `data` then names (streamed through a shuffle buffer by the run, see the kill -9 test).
fn shard_fixture() -> Fixture {
    let f = fixture();
    let shards = f.root.join("shards");
    let (o, err) = run(&[
        "pack",
        "--data",
        f.data.to_str().unwrap(),
        "--out",
        shards.to_str().unwrap(),
        "--shard-size",
        "12KB",
        "-q",
    ]);
    assert!(o.status.success(), "{err}");
    let count = std::fs::read_dir(&shards)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tar"))
        .count();
    assert!(count >= 3, "{count} shards");
    Fixture { data: shards, ..f }
}

/// `selfsup pretrain` into `out` with the smoke configuration and `sets`, plus `extra` flags.
fn pretrain(f: &Fixture, out: &Path, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = selfsup();
    c.args(["pretrain", "--data", f.data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", SMOKE]);
    for s in sets {
        c.args(["--set", s]);
    }
    c.args(extra);
    c
}

fn finish(cmd: Command, f: &Fixture, name: &str) -> (std::process::ExitStatus, String) {
    Launch::start(cmd, &f.root, name).wait(Duration::from_secs(120))
}

/// Steps logged so far (metrics.jsonl lines; `log_every = 1`).
fn logged_steps(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count() as u64)
}

/// Waits until the run has logged `step` steps (or has ended); bounded.
fn wait_for_step(launch: &mut Launch, out: &Path, step: u64) {
    let t = Instant::now();
    while logged_steps(out) < step && !launch.ended() {
        assert!(t.elapsed() < Duration::from_secs(120), "step {step} not reached in 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    metrics::read(&out.join("metrics.jsonl")).unwrap().iter().map(|m| (m.step, m.loss)).collect()
}

fn final_checkpoint(out: &Path) -> Checkpoint {
    Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap()
}

/// Bit-identical tensors, naming those that differ.
/// The run's TensorBoard file mirrors its metrics.jsonl (one file, no step twice or out of
/// order) and shows the uninterrupted reference run's loss curve.
fn assert_same_curves(out: &Path, reference: &Path, what: &str) {
    let curve = |run: &Path| -> Vec<(i64, f32)> {
        tfevents::assert_mirrors_metrics(run).iter().map(|e| (e.step, e.values["train/loss"])).collect()
    };
    assert_eq!(curve(out), curve(reference), "{what}: TensorBoard's loss curve");
}

fn assert_same(a: &[NamedTensor], b: &[NamedTensor], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: tensor counts");
    let differ: Vec<&str> = a.iter().zip(b).filter(|(x, y)| x != y).map(|(x, _)| x.name.as_str()).collect();
    assert!(differ.is_empty(), "{what} differ: {differ:?}");
}

/// An uninterrupted run of `epochs` epochs: its losses and final checkpoint.
fn reference(f: &Fixture, sets: &[&str]) -> (Vec<(u64, f64)>, Checkpoint) {
    let out = f.root.join("reference");
    let (st, err) = finish(pretrain(f, &out, sets, &["-q"]), f, "reference");
    assert!(st.success(), "{err}");
    (losses(&out), final_checkpoint(&out))
}

/// For every method: SIGTERM at a random step checkpoints there (exit 75) and the same command
/// with `--resume` ends with the uninterrupted run's losses, weights, optimizer state and method
/// state (teacher, queue and its write position, DINO's centre), bit for bit.
#[test]
fn sigterm_at_a_random_step_checkpoints_there_and_the_resumed_run_equals_an_uninterrupted_one() {
    let f = fixture();
    let mut pick = choices(test_seed());
    for kind in MethodKind::ALL {
        // SimCLR with LARS for 80 steps; the other methods for 24 (40 images, 4 held out for
        // the online classifier's accuracy: 4 steps of 8 per epoch).
        let mut sets: Vec<String> = match kind {
            MethodKind::Simclr => vec!["train.epochs=20".into(), "optim.kind=\"lars\"".into()],
            _ => [vec!["train.epochs=6".to_string()], method_sets(kind)].concat(),
        };
        // With the online linear classifier, which must resume exactly too.
        sets.push("monitor.linear=true".into());
        let total = if kind == MethodKind::Simclr { 80 } else { 24 };
        sets.push(format!("seed={}", 1 + pick(1000)));
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let name = kind.name();
        let reference_dir = f.root.join(format!("reference-{name}"));
        let (st, err) = finish(pretrain(&f, &reference_dir, &sets, &["-q"]), &f, &format!("reference-{name}"));
        assert!(st.success(), "{name}: {err}");
        let (want_losses, want) = (losses(&reference_dir), final_checkpoint(&reference_dir));
        let at = 2 + pick(total - 4);
        let out = f.root.join(format!("run-{name}"));
        let mut launch = Launch::start(pretrain(&f, &out, &sets, &[]), &f.root, &format!("sigterm-{name}"));
        wait_for_step(&mut launch, &out, at);
        signal(launch.child.id(), "-TERM");
        let (st, err) = launch.wait(Duration::from_secs(60));
        assert_eq!(st.code(), Some(RESUMABLE), "{name}: {err}");
        assert!(err.contains("SIGTERM: finishing this step") && err.contains("stopped by SIGTERM at step"), "{err}");
        let stopped = final_checkpoint(&out).position;
        assert!(
            stopped.global_step >= at && stopped.global_step < total,
            "{name}: signal after step {at}: {stopped:?}"
        );
        // The same command again, with --resume, continues to the end.
        let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume", "-q"]), &f, &format!("resume-{name}"));
        assert!(st.success(), "{name}: {err}");
        assert_eq!(losses(&out), want_losses, "{name}: loss sequences (stopped at {stopped:?})");
        assert_same_curves(&out, &reference_dir, &name);
        let got = final_checkpoint(&out);
        assert_same(&got.model, &want.model, &format!("{name}: final weights and batch-norm statistics"));
        assert_same(&got.optimizer, &want.optimizer, &format!("{name}: optimizer state"));
        assert_same(&got.method, &want.method, &format!("{name}: method state"));
        assert!(!want.online.is_empty(), "{name}: the labelled fixture trains the online classifier");
        assert_same(&got.online, &want.online, &format!("{name}: online linear classifier"));
        assert_eq!(got.notes.get("method.queue_next"), want.notes.get("method.queue_next"), "{name}: queue position");
    }
}

#[test]
fn a_second_signal_exits_at_once_and_sigusr1_stops_like_sigterm() {
    let f = fixture();
    // The second SIGINT is sent once the first has been received (its message is out: two
    // signals still pending together would arrive as one), and the steps are long enough
    // (ResNet-18, 40 images of 32 px: tenths of a second on 2 cores) that it lands before the
    // first signal's step and checkpoint are done; the smoke convnet's steps take milliseconds.
    let sets = ["train.epochs=400", "model.arch=\"resnet18\"", "train.batch_size=40", "augment.size=32"];
    let out = f.root.join("twice");
    let mut launch = Launch::start(pretrain(&f, &out, &sets, &[]), &f.root, "twice");
    wait_for_step(&mut launch, &out, 2);
    signal(launch.child.id(), "-INT");
    let t = Instant::now();
    while !launch.stderr_so_far().contains("SIGINT: finishing this step") && !launch.ended() {
        assert!(t.elapsed() < Duration::from_secs(60), "the first SIGINT not received in 60 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(launch.child.id(), "-INT");
    let (st, err) = launch.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(128 + 2), "{err}");
    assert!(err.contains("SIGINT again: exiting now without a checkpoint"), "{err}");

    let out = f.root.join("usr1");
    let mut launch = Launch::start(pretrain(&f, &out, &sets, &[]), &f.root, "usr1");
    wait_for_step(&mut launch, &out, 3);
    signal(launch.child.id(), "-USR1");
    let (st, err) = launch.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(RESUMABLE), "{err}");
    assert!(err.contains("stopped by SIGUSR1"), "{err}");
    assert!(final_checkpoint(&out).position.global_step >= 3);
}

/// kill -9 at 10 random points, each time restarted with the same command line
/// (`--resume=auto`, as a requeued job does); checkpoints every 2 steps, the last 3 kept. MoCo,
/// whose teacher and queue (with its write position) are in the checkpoint beside the weights.
#[test]
fn kill_9_at_random_points_then_the_same_command_again_ends_bit_identical() {
    // From WebDataset shards, streamed through a shuffle buffer: mid-epoch resumes must land on
    // the same samples.
    let f = shard_fixture();
    let mut sets: Vec<String> = [
        "train.epochs=8",
        "train.checkpoint_every_steps=2",
        "train.keep_checkpoints=3",
        "data.cache_limit=0",
        "data.shuffle_buffer=7",
        "monitor.linear=true",
    ]
    .map(String::from)
    .to_vec();
    sets.extend(method_sets(MethodKind::Moco));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let (want_losses, want) = reference(&f, &sets);
    // 8 epochs of 4 steps (4 of the 40 images held out for the online classifier).
    let total = 32;
    let mut pick = choices(test_seed());
    let out = f.root.join("run");
    let mut points: Vec<u64> = (0..10).map(|_| 1 + pick(total - 2)).collect();
    points.sort();
    let mut kills = 0;
    for (i, &at) in points.iter().enumerate() {
        let mut launch = Launch::start(pretrain(&f, &out, &sets, &["--resume=auto"]), &f.root, &format!("kill{i}"));
        wait_for_step(&mut launch, &out, at);
        // Sometimes at once, sometimes a little later (inside a step or a checkpoint write).
        std::thread::sleep(Duration::from_micros(pick(20_000)));
        if !launch.ended() {
            signal(launch.child.id(), "-9");
            kills += 1;
        }
        let (st, err) = launch.wait(Duration::from_secs(60));
        assert!(st.signal() == Some(9) || st.success(), "run {i}: {st:?} {err}");
        if i == 0 {
            assert!(err.contains("starting a new run"), "the first run starts: {err}");
        }
    }
    assert!(kills >= 5, "only {kills} of 10 kills landed before the run ended: {points:?}");
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume=auto"]), &f, "last");
    assert!(st.success(), "{err}");
    assert!(err.contains("resuming at"), "the same command resumes: {err}");
    assert_eq!(losses(&out), want_losses, "loss sequences (kills after steps {points:?})");
    assert_same_curves(&out, &f.root.join("reference"), "after kill -9");
    let got = final_checkpoint(&out);
    assert_same(&got.model, &want.model, "final weights and batch-norm statistics");
    assert_same(&got.optimizer, &want.optimizer, "optimizer state");
    assert_same(&got.method, &want.method, "teacher and queue");
    assert_same(&got.online, &want.online, "online linear classifier");
    let kept: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(kept, ["step-000000028.safetensors", "step-000000030.safetensors", "step-000000032.safetensors"]);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "killed writes' temporary files are cleaned up: {leftovers:?}");
}

#[test]
fn a_damaged_or_truncated_checkpoint_is_refused_naming_the_newest_good_one() {
    let f = fixture();
    // Checkpoints at steps 2, 4, 6, … only (not at epoch ends), the last three kept.
    let sets =
        ["train.epochs=4", "train.checkpoint_every=100", "train.checkpoint_every_steps=2", "train.keep_checkpoints=3"];
    let (_, want) = reference(&f, &sets);
    let out = f.root.join("run");
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--stop-after-steps", "6", "-q"]), &f, "first");
    assert!(st.success(), "{err}");
    let latest = out.join("checkpoint.safetensors");
    let good = std::fs::read(&latest).unwrap();
    // One flipped bit in place (the kept step-6 file is the same file, damaged too).
    let mut bad = good.clone();
    let i = bad.len() - 100;
    bad[i] ^= 4;
    std::fs::write(&latest, &bad).unwrap();
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume"]), &f, "damaged");
    assert_eq!(st.code(), Some(1), "{err}");
    let step4 = out.join("checkpoints/step-000000004.safetensors");
    assert!(
        err.contains("checkpoint.safetensors")
            && err.contains("damaged")
            && err.contains(&format!("--resume-from {}", step4.display())),
        "{err}"
    );
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    // Truncated: refused too, never a panic.
    std::fs::write(&latest, &good[..good.len() / 2]).unwrap();
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume", "-q"]), &f, "truncated");
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("not a selfsup checkpoint") && err.contains("step-000000004"), "{err}");
    // Continuing from the named one reaches the uninterrupted run's weights.
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume-from", step4.to_str().unwrap(), "-q"]), &f, "from4");
    assert!(st.success(), "{err}");
    assert_same(&final_checkpoint(&out).model, &want.model, "weights after resuming from step 4");
    assert_same_curves(&out, &f.root.join("reference"), "after --resume-from");
}

#[test]
fn a_disk_that_fills_during_a_checkpoint_keeps_the_previous_one_and_stops_clearly() {
    let f = fixture();
    let out = f.root.join("run");
    let sets = ["train.epochs=3"];
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--stop-after-steps", "3", "-q"]), &f, "first");
    assert!(st.success(), "{err}");
    let latest = out.join("checkpoint.safetensors");
    let before = std::fs::read(&latest).unwrap();
    // Files may grow to half a checkpoint: the next checkpoint write meets the limit.
    let limit = before.len() as u64 / 2;
    let mut cmd = pretrain(&f, &out, &sets, &["--resume", "-q"]);
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (st, err) = finish(cmd, &f, "full");
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("no room for it") && err.contains("is intact") && err.contains("checkpoint.safetensors"),
        "{err}"
    );
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    assert_eq!(std::fs::read(&latest).unwrap(), before, "the previous checkpoint is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With room again, the same command continues.
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume", "-q"]), &f, "room");
    assert!(st.success(), "{err}");
    assert_eq!(final_checkpoint(&out).position.global_step, 15);
}

#[test]
fn a_second_run_into_a_live_runs_folder_is_refused_and_a_killed_run_leaves_no_lock() {
    let f = fixture();
    let out = f.root.join("run");
    let sets = ["train.epochs=400"];
    let mut first = Launch::start(pretrain(&f, &out, &sets, &[]), &f.root, "first");
    // Past its first checkpoint (end of epoch 1), so that --resume alone would be possible.
    wait_for_step(&mut first, &out, 6);
    for flags in [&[][..], &["--resume=auto"], &["--resume"]] {
        let (st, err) = finish(pretrain(&f, &out, &sets, flags), &f, "second");
        assert_eq!(st.code(), Some(1), "{err}");
        assert!(err.contains("is in use by another selfsup pretrain (pid"), "{flags:?}: {err}");
    }
    assert!(!first.ended(), "the first run goes on");
    signal(first.child.id(), "-9");
    let _ = first.wait(Duration::from_secs(30));
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume=auto", "--stop-after-steps", "7", "-q"]), &f, "after");
    assert!(st.success(), "{err}");
}

#[test]
fn resume_accepts_the_runs_own_configuration_and_lists_every_key_that_differs() {
    let f = fixture();
    let out = f.root.join("run");
    let sets = ["train.epochs=2", "optim.lr=0.05"];
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--stop-after-steps", "3", "-q"]), &f, "first");
    assert!(st.success(), "{err}");
    let (st, err) =
        finish(pretrain(&f, &out, &["train.epochs=3", "optim.lr=0.05", "seed=9"], &["--resume"]), &f, "other");
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("seed = 9 on the command line but 1 in the run")
            && err.contains("train.epochs = 3 on the command line but 2 in the run")
            && !err.contains("optim.lr"),
        "{err}"
    );
    let (st, err) = finish(pretrain(&f, &out, &sets, &["--resume", "-q"]), &f, "same");
    assert!(st.success(), "{err}");
    assert_eq!(final_checkpoint(&out).position.global_step, 10);
    // Without --config/--set, --resume uses the run's own configuration as before.
    let (o, err) =
        run(&["pretrain", "--data", f.data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume", "-q"]);
    assert!(o.status.success(), "{err}");
}
