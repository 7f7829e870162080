//! End-to-end: `selfsup pretrain` as a user runs it — a run folder with its files, exact
//! resume, and clear one-line errors for bad configurations, bad folders and divergence.

mod common;

use common::{SMOKE, pretrain_args, run, shapes_folder, tfevents};
use selfsup::checkpoint::Checkpoint;
use selfsup::train::metrics;

#[test]
fn pretrain_writes_a_complete_run_folder_and_the_loss_falls() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 4, 12, 20);
    let out = d.path().join("run");
    let (o, err) = run(&[
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        SMOKE,
        "--set",
        "train.epochs=8",
    ]);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("device: flex"), "{err}");
    for f in ["config.toml", "device.txt", "metrics.jsonl", "checkpoint.safetensors"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 8 * 48 / 8, "one line per step with log_every = 1");
    assert!(m.iter().all(|r| r.loss.is_finite() && r.lr > 0.0 && r.pairs_per_sec > 0.0));
    assert!(m.iter().all(|r| (-1.0..=1.0).contains(&r.pos_sim) && (-1.0..=1.0).contains(&r.neg_sim)));
    // 16 embeddings per step: chance level is ln(15) = 2.708. Batches of 8 make single steps
    // noisy, so compare epoch means: the last epoch is clearly below the first and below chance,
    // and its positives are clearly more similar than its negatives.
    let mean = |rows: &[metrics::StepMetrics], f: fn(&metrics::StepMetrics) -> f64| {
        rows.iter().map(f).sum::<f64>() / rows.len() as f64
    };
    let (first, last) = (&m[..6], &m[m.len() - 6..]);
    let (l0, l1) = (mean(first, |r| r.loss), mean(last, |r| r.loss));
    assert!(l1 < l0 - 0.15 && l1 < 15f64.ln() - 0.25, "loss did not fall: first epoch {l0}, last {l1}");
    assert!(mean(last, |r| r.pos_sim) > mean(last, |r| r.neg_sim) + 0.2);
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!((ck.position.epoch, ck.position.global_step), (8, 48));
    assert!(ck.config.contains("batch_size = 8"));
    // The saved config is the resolved one: it validates and reproduces the run's settings.
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("epochs = 8") && saved.contains("[augment.color_jitter]"));
}

#[test]
fn resume_after_an_interruption_equals_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 20, 18);
    let common = [
        "--data",
        data.to_str().unwrap(),
        "--config",
        SMOKE,
        "--set",
        "train.epochs=3",
        "--set",
        "optim.kind=\"lars\"",
        "-q",
    ];
    let a = d.path().join("a");
    let (o, err) = run(&[&["pretrain", "--out", a.to_str().unwrap()], &common[..]].concat());
    assert!(o.status.success(), "{err}");
    let b = d.path().join("b");
    // Stop in the middle of the second epoch (5 steps per epoch), then resume.
    let (o, err) = run(&[&["pretrain", "--out", b.to_str().unwrap(), "--stop-after-steps", "7"], &common[..]].concat());
    assert!(o.status.success(), "{err}");
    let mid = Checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!((mid.position.epoch, mid.position.step_in_epoch, mid.position.global_step), (1, 2, 7));
    let (o, err) = run(&["pretrain", "--resume", "--out", b.to_str().unwrap(), "--data", data.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{err}");

    let la: Vec<(u64, f64)> =
        metrics::read(&a.join("metrics.jsonl")).unwrap().iter().map(|m| (m.step, m.loss)).collect();
    let lb: Vec<(u64, f64)> =
        metrics::read(&b.join("metrics.jsonl")).unwrap().iter().map(|m| (m.step, m.loss)).collect();
    assert_eq!(la.len(), 15);
    assert_eq!(la, lb, "loss sequences differ");
    let ca = Checkpoint::load(&a.join("checkpoint.safetensors")).unwrap();
    let cb = Checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ca.position, cb.position);
    assert_same_tensors(&ca.model, &cb.model, "final weights and BatchNorm statistics");
    assert_same_tensors(&ca.optimizer, &cb.optimizer, "optimizer state");
}

/// Bit-identical tensors, reporting which differ and by how much otherwise.
fn assert_same_tensors(
    a: &[selfsup::named_tensors::NamedTensor],
    b: &[selfsup::named_tensors::NamedTensor],
    what: &str,
) {
    assert_eq!(
        a.iter().map(|t| &t.name).collect::<Vec<_>>(),
        b.iter().map(|t| &t.name).collect::<Vec<_>>(),
        "{what}: names"
    );
    let diffs: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.values != y.values)
        .map(|(x, y)| {
            let max = x.values.iter().zip(&y.values).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            format!("{} (max diff {max:e})", x.name)
        })
        .collect();
    assert!(diffs.is_empty(), "{what} differ: {diffs:?}");
}

#[test]
fn bad_configurations_are_rejected_before_any_work_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 4, 16);
    for (set, needle) in [
        ("loss.temperature=0", "loss.temperature"),
        ("train.batch_size=1", "train.batch_size"),
        ("augment.crop.scale=[0.5, 1.2]", "augment.crop.scale"),
        ("optim.mystery=3", "mystery"),
        ("loss.tau_plus=1.0", "loss.tau_plus"),
        ("loss.beta=-1", "loss.beta"),
        ("loss.dclw_sigma=0", "loss.dclw_sigma"),
        ("train.micro_batch=1", "train.micro_batch"),
        ("augment.views=0", "augment.views"),
        ("augment.small_views=99", "augment.small_views"),
        ("train.batch_size=64", "fewer than one batch"),
    ] {
        let out = d.path().join(format!("run-{}", set.len()));
        let (o, err) = run(&[
            "pretrain",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            SMOKE,
            "--set",
            set,
        ]);
        assert!(!o.status.success(), "{set} was accepted");
        assert!(err.contains(needle), "{set}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
        assert!(!out.join("checkpoint.safetensors").exists());
    }
}

#[test]
fn run_folders_are_not_overwritten_and_resume_needs_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let out = d.path().join("run");
    let args = [
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        SMOKE,
        "--set",
        "train.epochs=1",
        "-q",
    ];
    assert!(run(&args).0.status.success());
    let (o, err) = run(&args);
    assert!(!o.status.success() && err.contains("already holds a run") && err.contains("--resume"), "{err}");
    let (o, err) = run(&[
        "pretrain",
        "--resume",
        "--data",
        data.to_str().unwrap(),
        "--out",
        d.path().join("nothing").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && err.contains("no checkpoint"), "{err}");
    let (o, err) = run(&[
        "pretrain",
        "--resume",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=9",
    ]);
    assert!(!o.status.success() && err.contains("train.epochs = 9 on the command line but 1 in the run"), "{err}");
}

#[test]
fn divergence_stops_at_once_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let out = d.path().join("run");
    let base = ["--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", SMOKE, "-q"];
    // One good epoch and its checkpoint, stopped there.
    assert!(run(&[&["pretrain", "--stop-after-steps", "2"], &base[..]].concat()).0.status.success());
    let good = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    // A second run with an absurd learning rate diverges.
    let out2 = d.path().join("run2");
    let (o, err) = run(&[
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--config",
        SMOKE,
        "--set",
        "optim.lr=1e30",
        "-q",
    ]);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("diverged")
            && err.contains("at step")
            && err.contains("optim.lr")
            && err.contains("loss.temperature"),
        "{err}"
    );
    assert!(!out2.join("checkpoint.safetensors").exists(), "no checkpoint of diverged weights");
    assert_eq!(std::fs::read(out.join("checkpoint.safetensors")).unwrap(), good);
}

#[test]
fn monitoring_logs_collapse_statistics_and_online_knn_and_can_stop_on_collapse() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 4, 15, 16);
    let out = d.path().join("run");
    let monitor = [
        "--set",
        "monitor.every=2",
        "--set",
        "monitor.knn_every=1",
        "--set",
        "monitor.knn_bank=40",
        "--set",
        "monitor.knn_k=5",
        "--set",
        "monitor.linear=true",
    ];
    let (o, err) = run(&[
        &["pretrain", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", SMOKE, "-q"],
        &monitor[..],
    ]
    .concat());
    assert!(o.status.success(), "{err}");
    // 60 images, 6 held out: 54 trained on, 6 steps of 8 per epoch, 2 epochs.
    let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
    let mon: Vec<_> = m.iter().filter_map(|r| r.monitor.as_ref().map(|x| (r.step, x))).collect();
    assert_eq!(
        mon.iter().filter(|(_, x)| x.backbone.is_some()).map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![2, 4, 6, 8, 10, 12]
    );
    let (_, first) = mon[0];
    let b = first.backbone.as_ref().unwrap();
    assert_eq!(b.dim, 256);
    assert!(b.std_ratio > 0.0 && b.effective_rank >= 1.0 && b.uniformity <= 0.0 && b.alignment >= 0.0);
    assert_eq!(first.projection.as_ref().unwrap().dim, 32);
    let knn: Vec<u64> = mon.iter().filter(|(_, x)| x.knn.is_some()).map(|(s, _)| *s).collect();
    assert_eq!(knn, vec![6, 12], "online k-NN at the end of each epoch");
    assert!(mon.iter().all(|(_, x)| x.knn.as_ref().is_none_or(|k| (0.0..=1.0).contains(&k.top1))));
    // TensorBoard shows the same values under stable tags.
    let events = tfevents::assert_mirrors_metrics(&out);
    let tagged = |tag: &str| events.iter().filter(|e| e.values.contains_key(tag)).map(|e| e.step).collect::<Vec<_>>();
    assert_eq!(tagged("monitor/backbone/std_sqrt_d"), vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(tagged("monitor/projection/effective_rank"), vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(tagged("monitor/knn_top1"), vec![6, 12]);
    // The online linear classifier, measured at the end of each epoch on the held-out images.
    let linear: Vec<(u64, f64, usize)> =
        mon.iter().filter_map(|(s, x)| x.linear.as_ref().map(|l| (*s, l.top1, l.images))).collect();
    assert_eq!(linear.iter().map(|l| l.0).collect::<Vec<_>>(), vec![6, 12], "{linear:?}");
    assert!(linear.iter().all(|l| (0.0..=1.0).contains(&l.1) && l.2 == 6), "{linear:?}");
    assert_eq!(tagged("monitor/linear_top1"), vec![6, 12]);
    assert_eq!(tagged("train/loss").len(), m.len());

    // A threshold no representation can meet (std·√d is at most 1) fires the rule at once.
    let out2 = d.path().join("run2");
    let (o, err) = run(&[
        &[
            "pretrain",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out2.to_str().unwrap(),
            "--config",
            SMOKE,
            "--stop-on-collapse",
            "--set",
            "monitor.std_threshold=5.0",
        ],
        &monitor[..],
    ]
    .concat());
    assert!(!o.status.success());
    assert!(
        err.contains("warning: representation collapse at step 2") && err.contains("stopping on collapse at step 2"),
        "{err}"
    );
    assert!(!out2.join("checkpoint.safetensors").exists());
}

#[test]
fn every_loss_kind_trains_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    for (kind, extra) in [
        ("dcl", "loss.temperature=0.5"),
        ("dclw", "loss.dclw_sigma=0.5"),
        ("debiased", "loss.beta=1.0"),
        ("supcon", "loss.temperature=0.5"),
    ] {
        let out = d.path().join(kind);
        let kind_set = format!("loss.kind=\"{kind}\"");
        let mut args = pretrain_args(&data, &out, &[&kind_set, extra]);
        args.extend(["--stop-after-steps", "3", "-q"].map(String::from));
        let (o, err) = run(&args);
        assert!(o.status.success(), "{kind}: {err}");
        let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
        assert_eq!(m.len(), 3, "{kind}");
        assert!(m.iter().all(|r| r.loss.is_finite()), "{kind}: {m:?}");
    }
}

#[test]
fn a_resolution_schedule_trains_early_epochs_smaller_and_ramps_to_the_size() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let out = d.path().join("run");
    let sets = ["train.epochs=5", "augment.size_schedule={ min_size = 8, ramp_start = 1, ramp_end = 3 }"];
    let mut args = pretrain_args(&data, &out, &sets);
    args.push("-q".into());
    let (o, err) = run(&args);
    assert!(o.status.success(), "{err}");
    // 16 images, 2 steps of 8 per epoch: 8 px until epoch 1, 12 at epoch 2, 16 from epoch 3.
    let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
    let sizes: Vec<(u64, usize)> = m.iter().map(|r| (r.epoch, r.size)).collect();
    assert_eq!(sizes, [(0, 8), (0, 8), (1, 8), (1, 8), (2, 12), (2, 12), (3, 16), (3, 16), (4, 16), (4, 16)]);
    assert!(m.iter().all(|r| r.loss.is_finite()));
}

/// Multi-crop (3 full-size + 2 small views per image) with gradient caching (micro-batches of
/// 4 of the 8 images) trains from the command line; a two-view-only loss with more views is
/// refused naming the key and the views; so is a small view larger than the full ones.
#[test]
fn multi_crop_and_gradient_caching_train_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let out = d.path().join("multi");
    let sets = ["augment.views=3", "augment.small_views=2", "augment.small.size=8", "train.micro_batch=4"];
    let mut args = pretrain_args(&data, &out, &sets);
    args.extend(["--stop-after-steps", "3", "-q"].map(String::from));
    let (o, err) = run(&args);
    assert!(o.status.success(), "{err}");
    let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 3);
    assert!(m.iter().all(|r| r.loss.is_finite() && r.pos_sim.is_finite()), "{m:?}");
    for (sets, needles) in [
        (&["augment.views=3", "loss.kind=\"dcl\""][..], &["loss.kind", "\"dcl\"", "augment.views = 3"][..]),
        (&["augment.small_views=2", "augment.small.size=32"][..], &["augment.small.size", "32"][..]),
        (&["augment.small_views=2", "augment.small.scale=[0.2, 0.1]"][..], &["augment.small.scale"][..]),
    ] {
        let out = d.path().join(format!("refused-{}", sets[1].len()));
        let args = pretrain_args(&data, &out, sets);
        let (o, err) = run(&args);
        assert!(!o.status.success());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(needles.iter().all(|n| err.contains(n)), "{sets:?}: {err}");
    }
}
