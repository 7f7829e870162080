//! End-to-end: the self-supervised methods (`method.kind`) as a user runs them — every shipped
//! `configs/cifar10-<method>.toml` trains a few steps on flex and on ndarray with the monitor and
//! the online k-NN on, its checkpoint evaluates with `knn` and exports with `export` (the
//! student, or the teacher with `--weights teacher`, recorded in the outputs); SimSiam without
//! its stop-gradient collapses and the monitor says so (and `--stop-on-collapse` stops it) while
//! the same run with the stop-gradient does not; bad method settings are refused naming the key.

mod common;

use std::path::Path;

use common::{run, shapes_folder};
use selfsup::checkpoint::Checkpoint;
use selfsup::method::MethodKind;
use selfsup::train::metrics;

fn config(kind: MethodKind) -> String {
    format!("{}/configs/cifar10-{}.toml", env!("CARGO_MANIFEST_DIR"), kind.name())
}

/// `pretrain --config <the method's config>` shrunk to a tiny folder: 16 px, batches of 8, the
/// given epochs, every step logged, the monitor every 2 steps and the online k-NN every epoch.
fn pretrain(kind: MethodKind, data: &Path, out: &Path, backend: &str, epochs: u32, extra: &[&str]) -> (bool, String) {
    let cfg = config(kind);
    let epochs = format!("train.epochs={epochs}");
    let mut args = vec![
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        &cfg,
        "--backend",
        backend,
    ];
    for s in [
        "augment.size=16",
        "train.batch_size=8",
        epochs.as_str(),
        "train.log_every=1",
        "monitor.every=2",
        "monitor.holdout=8",
        "monitor.knn_every=1",
        "monitor.knn_bank=32",
        "monitor.knn_k=5",
    ] {
        args.extend(["--set", s]);
    }
    args.extend(extra);
    let (o, err) = run(&args);
    (o.status.success(), err)
}

/// Every method's config trains on flex and ndarray: finite losses, the monitor's statistics and
/// the online k-NN of the network evaluation uses (DINO: its teacher), NNCLR's neighbour
/// agreement, the teacher's momentum; the checkpoint holds the method's state; `knn` reads it
/// with the default network and, for the teacher methods, with `--weights teacher`, naming the
/// network in its JSON; `--weights teacher` is refused for a method without one.
#[test]
fn every_method_trains_from_its_config_on_flex_and_ndarray_and_evaluates() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 20, 16);
    for kind in MethodKind::ALL.into_iter().filter(|k| *k != MethodKind::Simclr) {
        for backend in ["flex", "ndarray"] {
            let out = d.path().join(format!("{}-{backend}", kind.name()));
            let (ok, err) = pretrain(kind, &data, &out, backend, 1, &[]);
            let what = format!("{} on {backend}", kind.name());
            assert!(ok, "{what}: {err}");
            assert!(err.contains(&format!("method: {}", kind.name())), "{what}: {err}");
            let m = metrics::read(&out.join("metrics.jsonl")).unwrap();
            assert_eq!(m.len(), 4, "{what}: 36 training images (4 held out), 4 steps of 8");
            assert!(m.iter().all(|r| r.loss.is_finite()), "{what}: {m:?}");
            let monitored = m.iter().filter_map(|r| r.monitor.as_ref()).collect::<Vec<_>>();
            assert!(monitored.iter().any(|r| r.backbone.is_some() && r.projection.is_some()), "{what}");
            assert!(monitored.iter().any(|r| r.knn.is_some()), "{what}: online k-NN");
            assert_eq!(m.iter().all(|r| r.teacher_momentum.is_some()), kind.has_teacher(), "{what}");
            if kind == MethodKind::Nnclr {
                // The first step's neighbours are all the queue's random rows (no label); later
                // ones find the pushed projections of labelled images too.
                assert!(m[0].neighbour_agreement.is_none(), "{m:?}");
                assert!(m.iter().all(|r| r.neighbour_agreement.is_none_or(|a| (0.0..=1.0).contains(&a))), "{m:?}");
                assert!(m[1..].iter().any(|r| r.neighbour_agreement.is_some()), "{m:?}");
            }
            let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
            let has = |p: &str| ck.method.iter().any(|t| t.name.starts_with(p));
            assert_eq!(has("teacher."), kind.has_teacher(), "{what}: teacher in the checkpoint");
            assert_eq!(has("queue.keys"), kind.has_queue(), "{what}: queue in the checkpoint");
            assert_eq!(has("center"), kind == MethodKind::Dino, "{what}: centre in the checkpoint");
            assert_eq!(ck.model.iter().any(|t| t.name.starts_with("predictor.")), kind.has_predictor(), "{what}");
        }
        // Evaluation of the flex run: the default network, then the other.
        let out = d.path().join(format!("{}-flex", kind.name()));
        let knn = |extra: &[&str]| {
            let mut a = vec![
                "knn",
                "--model",
                out.to_str().unwrap(),
                "--train",
                data.to_str().unwrap(),
                "--test",
                data.to_str().unwrap(),
                "--k",
                "5",
                "--backend",
                "flex",
                "-q",
            ];
            a.extend(extra);
            run(&a)
        };
        let (o, err) = knn(&[]);
        assert!(o.status.success(), "{}: {err}", kind.name());
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("eval/knn-trained.json")).unwrap()).unwrap();
        assert_eq!(rec["weights"], kind.default_weights().name(), "{}", kind.name());
        let other = if kind == MethodKind::Dino { "student" } else { "teacher" };
        let (o, err) = knn(&["--weights", other]);
        if kind.has_teacher() {
            assert!(o.status.success(), "{}: {err}", kind.name());
            let rec: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out.join(format!("eval/knn-trained-{other}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(rec["weights"], other);
        } else {
            assert_eq!(o.status.code(), Some(1), "{}: {err}", kind.name());
            assert!(
                err.contains(&format!("method.kind = \"{}\", which has no teacher", kind.name()))
                    && err.lines().filter(|l| l.starts_with("error")).count() == 1,
                "{err}"
            );
        }
    }
}

/// `export --weights teacher` holds the teacher's backbone (not the student's), says so in its
/// metadata, and the default is the student for BYOL and the teacher for DINO; `pretrain
/// --init` of such an export starts the student and the teacher from it; the report names the
/// method and the network it shows.
#[test]
fn export_takes_the_student_or_the_teacher_and_records_which() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 12, 16);
    for kind in [MethodKind::Byol, MethodKind::Dino] {
        let out = d.path().join(kind.name());
        let (ok, err) =
            pretrain(kind, &data, &out, "flex", 2, &["--set", "monitor.every=0", "--set", "monitor.knn_every=0"]);
        assert!(ok, "{err}");
        let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
        let name = "backbone.ConvNet.layers.0.conv.weight";
        let student = ck.model.iter().find(|t| t.name == name).unwrap().values.clone();
        let teacher = ck.method.iter().find(|t| t.name == format!("teacher.{name}")).unwrap().values.clone();
        assert_ne!(student, teacher, "{}: the teacher trails the student", kind.name());
        for (flag, want) in
            [(None, kind.default_weights().name()), (Some("student"), "student"), (Some("teacher"), "teacher")]
        {
            let file = d.path().join(format!("{}-{want}.safetensors", kind.name()));
            let mut args = vec!["export", "--model", out.to_str().unwrap(), "--out", file.to_str().unwrap(), "-q"];
            if let Some(f) = flag {
                args.extend(["--weights", f]);
            }
            let (o, err) = run(&args);
            assert!(o.status.success(), "{err}");
            let bytes = std::fs::read(&file).unwrap();
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            let meta = meta.metadata().clone().unwrap();
            assert_eq!((meta["weights"].as_str(), meta["method"].as_str()), (want, kind.name().as_str()));
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let got: Vec<f32> = st
                .tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(
                got,
                if want == "teacher" { teacher.clone() } else { student.clone() },
                "{} {want}",
                kind.name()
            );
        }
    }
    // `--init` starts the student's backbone, and the teacher starts as its copy.
    let init = d.path().join(format!("{}-student.safetensors", MethodKind::Byol.name()));
    let out = d.path().join("init");
    let (ok, err) = pretrain(
        MethodKind::Dino,
        &data,
        &out,
        "flex",
        2,
        &["--init", init.to_str().unwrap(), "--stop-after-steps", "0"],
    );
    assert!(ok, "{err}");
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let bytes = std::fs::read(&init).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in st.names() {
        let want: Vec<f32> = st
            .tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let student = &ck.model.iter().find(|t| &t.name == name).unwrap().values;
        let teacher = &ck.method.iter().find(|t| t.name == format!("teacher.{name}")).unwrap().values;
        assert_eq!((student, teacher), (&want, &want), "{name}");
        checked += 1;
    }
    assert!(checked > 10, "{checked} backbone tensors");
    let (o, err) = run(&["report", out.to_str().unwrap(), "--backend", "flex"]);
    assert!(o.status.success(), "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("dino (the monitor, neighbours and default evaluation use the teacher)"),
        "the report names the method"
    );
}

/// SimSiam's ablation (Chen & He 2021, Fig. 2): without the stop-gradient the projections
/// collapse to a constant — the monitor's std·√d falls under its threshold and the effective
/// rank drops — and `--stop-on-collapse` ends the run there with a one-line error; the same run
/// with the stop-gradient keeps its spread and finishes.
#[test]
fn simsiam_without_its_stop_gradient_collapses_and_the_monitor_stops_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 4, 30, 16);
    let smoke = common::SMOKE;
    let go = |stop_gradient: bool, out: &Path, extra: &[&str]| {
        let sg = format!("method.stop_gradient={stop_gradient}");
        let mut args =
            vec!["pretrain", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", smoke];
        for s in [
            "method.kind=simsiam",
            sg.as_str(),
            "method.predictor.hidden_dim=32",
            "train.epochs=10",
            "monitor.every=5",
            "monitor.holdout=12",
            "optim.lr=0.05",
        ] {
            args.extend(["--set", s]);
        }
        args.extend(extra);
        run(&args)
    };
    let stats = |out: &Path| -> Vec<(u64, f64, f64, bool)> {
        metrics::read(&out.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .filter_map(|m| {
                let r = m.monitor.as_ref()?;
                let p = r.projection.as_ref()?;
                Some((m.step, p.std_ratio, p.effective_rank, !r.collapse.is_empty()))
            })
            .collect()
    };
    let (healthy, open) = (d.path().join("with"), d.path().join("without"));
    let (o, err) = go(true, &healthy, &[]);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("representation collapse"), "{err}");
    let with = stats(&healthy);
    assert!(with.iter().all(|s| !s.3) && with.last().unwrap().1 > 0.3, "{with:?}");
    let (o, err) = go(false, &open, &[]);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: representation collapse at step") && err.contains("projection embedding std"),
        "{err}"
    );
    let without = stats(&open);
    let last = without.last().unwrap();
    assert!(last.1 < 0.1 && last.3, "the projections collapsed: {without:?}");
    let rank = |s: &[(u64, f64, f64, bool)]| s.last().unwrap().2;
    assert!(rank(&without) < 0.5 * rank(&with), "effective rank {} vs {}", rank(&without), rank(&with));
    // --stop-on-collapse ends the run at the first check that fires, keeping the last checkpoint.
    let stopped = d.path().join("stopped");
    let (o, err) = go(false, &stopped, &["--stop-on-collapse"]);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let first = without.iter().find(|s| s.3).unwrap().0;
    assert!(err.contains(&format!("stopping on collapse at step {first} (--stop-on-collapse)")), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
}

/// Method settings that cannot work are refused before any work, naming the key.
#[test]
fn bad_method_settings_are_refused_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 8, 16);
    let out = d.path().join("run");
    for (sets, needle) in [
        (
            &["method.kind=byol", "method.queue_size=10"][..],
            "method.queue_size does not apply to method.kind = \"byol\" (it is read by moco, nnclr)",
        ),
        (&["method.kind=swav"], "method.kind = \"swav\": unknown method"),
        (
            &["method.kind=moco", "loss.kind=dcl"],
            "loss.kind = \"dcl\": is SimCLR's; method.kind = \"moco\" has its own loss",
        ),
        (&["method.kind=byol", "augment.small_views=2"], "method.kind = \"byol\" is defined for two views"),
        (&["method.kind=dino", "augment.views=3"], "augment.views = 3: 2 for method.kind = \"dino\""),
        (&["method.kind=moco", "method.momentum=1.5"], "method.momentum = 1.5: must be in [0, 1]"),
        (&["method.kind=nnclr", "method.queue_size=0"], "method.queue_size = 0: at least 1"),
        (&["method.kind=dino", "method.student_temperature=0"], "method.student_temperature = 0: must be > 0"),
    ] {
        let mut args = common::pretrain_args(&data, &out, sets);
        args.push("-q".into());
        let (o, err) = run(&args);
        assert_eq!(o.status.code(), Some(1), "{sets:?}: {err}");
        assert!(err.contains(needle), "{sets:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{sets:?}: {err}");
        assert!(!out.join("checkpoint.safetensors").exists());
    }
}
