//! End-to-end: the evaluation commands on a small trained run — k-NN, the linear probe and the
//! baselines, embeddings, neighbours, export and the HTML report — as a user runs them.

mod common;

use common::{embed, pretrain_args, read_npy, run, shapes_folder};
use selfsup::eval::record::EvalRecord;

/// A trained run on a small labelled folder: (tempdir, data, run).
fn trained() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 3, 12, 16);
    let out = d.path().join("run");
    let mut args = pretrain_args(&data, &out, &["monitor.linear=true"]);
    args.push("-q".into());
    let (o, err) = run(&args);
    assert!(o.status.success(), "{err}");
    (d, data, out)
}

#[test]
fn knn_and_probe_against_both_baselines_are_saved_in_the_run() {
    let (_d, data, out) = trained();
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    for baseline in [None, Some("random-init"), Some("pixels")] {
        let mut args =
            vec!["knn", "--model", out, "--train", data, "--test", data, "--k", "1,5,10", "--backend", "flex", "-q"];
        let mut pargs = vec![
            "probe",
            "--model",
            out,
            "--train",
            data,
            "--test",
            data,
            "--backend",
            "flex",
            "-q",
            "--wd",
            "1e-4,1e-2",
        ];
        if let Some(b) = baseline {
            args.extend(["--baseline", b]);
            pargs.extend(["--baseline", b]);
        }
        let (o, err) = run(&args);
        assert!(o.status.success(), "{baseline:?}: {err}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("k =    1") && stdout.contains("k =   10"), "{stdout}");
        assert!(stdout.contains("each left out of its own ranking") && stdout.contains("MAP@R"), "{stdout}");
        let (o, err) = run(&pargs);
        assert!(o.status.success(), "{baseline:?}: {err}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("linear probe") && stdout.contains("class0"), "{stdout}");
    }
    let recs = EvalRecord::load_all(&std::path::Path::new(out).join("eval")).unwrap();
    let mut names: Vec<String> =
        recs.iter().map(|r| format!("{}-{}", if r.probe.is_some() { "probe" } else { "knn" }, r.features)).collect();
    names.sort();
    assert_eq!(
        names,
        ["knn-pixels", "knn-random-init", "knn-trained", "probe-pixels", "probe-random-init", "probe-trained"]
    );
    // Searching the test images among themselves: with k = 1 each image finds itself.
    let knn = recs.iter().find(|r| r.features == "trained" && r.knn.is_some()).unwrap();
    assert_eq!(knn.knn.as_ref().unwrap()[0].top1, 1.0);
    assert_eq!(knn.feature_dim, 256);
    // Retrieval leaves each image out of its own ranking, so it is not trivially perfect.
    let r = knn.retrieval.as_ref().unwrap();
    assert!(r.leave_one_out && r.queries == knn.test_images, "{r:?}");
    assert!(r.map_at_r > 0.0 && r.map_at_r <= 1.0 && r.precision_at_1 == r.recall_at[0].recall, "{r:?}");
    let px = recs.iter().find(|r| r.features == "pixels" && r.knn.is_some()).unwrap();
    assert_eq!(px.feature_dim, 3 * 16 * 16);
    let probe = recs.iter().find(|r| r.features == "trained" && r.probe.is_some()).unwrap().probe.clone().unwrap();
    assert_eq!(probe.confusion.iter().flatten().sum::<u64>(), 36);
    assert!(std::path::Path::new(out).join("eval/confusion-trained.csv").is_file());
    assert!(image::open(std::path::Path::new(out).join("eval/confusion-trained.png")).is_ok());
}

#[test]
fn embed_neighbors_export_and_report() {
    let (d, data, out) = trained();
    let npy = d.path().join("emb/emb.npy");
    let (o, err) = embed(&out, &data, &npy);
    assert!(o.status.success(), "{err}");
    let (rows, dim, _) = read_npy(&npy);
    assert_eq!((rows, dim), (36, 256));
    let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 37);
    assert!(csv.lines().nth(1).unwrap().ends_with(",0,class0"), "{csv}");

    let query = data.join("class1/003.png");
    let grid = d.path().join("nn.png");
    let (o, err) = run(&[
        "neighbors",
        "--model",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--query",
        query.to_str().unwrap(),
        "--k",
        "4",
        "--out",
        grid.to_str().unwrap(),
        "--backend",
        "flex",
        "-q",
    ]);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    // The query itself is in the folder: it is its own nearest neighbour.
    assert!(stdout.lines().next().unwrap().contains("class1/003.png"), "{stdout}");
    assert!(stdout.lines().next().unwrap().contains("1.0000"), "{stdout}");
    assert!(image::open(&grid).is_ok());

    let st = d.path().join("encoder.safetensors");
    let (o, err) = run(&["export", "--model", out.to_str().unwrap(), "--out", st.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{err}");
    let bytes = std::fs::read(&st).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["arch"], "convnet");
    assert_eq!(meta["feature_dim"], "256");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(tensors.names().iter().all(|n| n.starts_with("backbone.")));
    assert_eq!(tensors.tensor("backbone.ConvNet.layers.0.conv.weight").unwrap().shape(), &[32, 3, 3, 3]);

    // Class folders with a name in another script and one long enough to be cut, holding
    // HTML's special characters: probes of the encoder and the pixels on them, then the report.
    let renamed = d.path().join("renamed");
    let long = "<i>a rather long class name & more";
    for (from, to) in [("class0", "猫"), ("class1", long), ("class2", "class2")] {
        let dir = renamed.join(to);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(data.join(from)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let r = renamed.to_str().unwrap();
    for baseline in [&[][..], &["--baseline", "pixels"][..]] {
        let mut args =
            vec!["probe", "--model", out.to_str().unwrap(), "--train", r, "--test", r, "--backend", "flex", "-q"];
        args.extend(baseline);
        let (o, err) = run(&args);
        assert!(o.status.success(), "{err}");
    }
    let (o, err) = run(&["report", out.to_str().unwrap(), "--backend", "flex"]);
    assert!(o.status.success(), "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for needle in [
        "<h2>Summary</h2>",
        "finished: 2 epochs",
        "online linear classifier (held out)",
        "Loss, learning rate",
        "Online k-NN and linear-classifier accuracy",
        "Embedding map: the trained network beside random init",
        "36 images of",
        "Augmentations",
        "Nearest neighbours",
        "<h2>Configuration</h2>",
        "data:image/png;base64,",
        "猫",
        "&lt;i&gt;a rather long class name &amp; more",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(!html.contains(long), "class names are escaped");
    // The two probes' confusion matrices side by side, the baseline first.
    assert_eq!(html.matches("<div class=\"cm\">").count(), 2);
    let (pixels, trained) = (html.find("linear probe: pixels").unwrap(), html.find("linear probe: trained").unwrap());
    assert!(pixels < trained);
    assert!(image::open(out.join("plots/embedding-map.png")).is_ok());
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "the report must work offline"
    );
}

#[test]
fn evaluation_errors_are_one_line_and_name_the_problem() {
    let (d, data, out) = trained();
    let unlabeled = d.path().join("flat");
    std::fs::create_dir_all(&unlabeled).unwrap();
    std::fs::copy(data.join("class0/000.png"), unlabeled.join("a.png")).unwrap();
    for (args, needle) in [
        (vec!["knn", "--train", data.to_str().unwrap(), "--test", data.to_str().unwrap()], "--model"),
        (
            vec![
                "knn",
                "--model",
                d.path().join("nope").to_str().unwrap(),
                "--train",
                data.to_str().unwrap(),
                "--test",
                data.to_str().unwrap(),
            ],
            "no such run",
        ),
        (
            vec![
                "knn",
                "--model",
                out.to_str().unwrap(),
                "--train",
                unlabeled.to_str().unwrap(),
                "--test",
                data.to_str().unwrap(),
                "--backend",
                "flex",
            ],
            "needs labels",
        ),
        (
            vec![
                "knn",
                "--model",
                out.to_str().unwrap(),
                "--train",
                data.to_str().unwrap(),
                "--test",
                data.to_str().unwrap(),
                "--k",
                "0",
            ],
            "at least 1",
        ),
        (
            vec![
                "probe",
                "--model",
                out.to_str().unwrap(),
                "--train",
                data.to_str().unwrap(),
                "--test",
                data.to_str().unwrap(),
                "--set",
                "seed=3",
            ],
            "drop --config/--set",
        ),
    ] {
        let (o, err) = run(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
}
