//! End-to-end: `selfsup demo` as a newcomer runs it, shrunk to seconds (few images, one
//! epoch). The full demo's margin over the baselines is measured in BENCHMARKS.md.

mod common;

use common::run;
use selfsup::eval::record::EvalRecord;

#[test]
fn demo_generates_data_trains_evaluates_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let args = [
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--per-class",
        "12",
        "--backend",
        "flex",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "monitor.knn_bank=50",
    ];
    let (o, err) = run(&args);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for needle in ["trained", "random-init", "pixels", "report:"] {
        assert!(stdout.contains(needle), "{stdout}");
    }
    assert_eq!(std::fs::read_dir(out.join("data/train")).unwrap().count(), 10, "ten class folders");
    let recs = EvalRecord::load_all(&out.join("run/eval")).unwrap();
    assert_eq!(recs.len(), 6, "k-NN and probe for the encoder and both baselines");
    assert!(recs.iter().all(|r| r.test_images == 100 && r.classes.len() == 10));
    let html = std::fs::read_to_string(out.join("run/report.html")).unwrap();
    assert!(html.contains("linear probe") && html.contains("random-init") && html.contains("pixels"));
    assert_eq!(html.matches("retrieval: P@1, R@5").count(), 3, "a retrieval row for the encoder and each baseline");
    // A second demo into the same folder does not overwrite the first.
    let (o, err) = run(&args);
    assert!(!o.status.success() && err.contains("already holds a demo run"), "{err}");
}
