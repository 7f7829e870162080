//! The linear probe's confusion matrix, written as CSV (counts, true classes as rows) and as a
//! row-normalized PNG heatmap.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// CSV text: a header of predicted class names, then one row of counts per true class.
pub fn to_csv(names: &[String], counts: &[Vec<u64>]) -> String {
    let quote =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    let mut out = String::from("true\\predicted");
    for n in names {
        let _ = write!(out, ",{}", quote(n));
    }
    out.push('\n');
    for (name, row) in names.iter().zip(counts) {
        out.push_str(&quote(name));
        for v in row {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    out
}

/// Writes `<stem>.csv` and `<stem>.png` into `dir`.
pub fn write(dir: &Path, stem: &str, title: &str, names: &[String], counts: &[Vec<u64>]) -> Result<()> {
    crate::atomic::write_bytes(&dir.join(format!("{stem}.csv")), to_csv(names, counts).as_bytes())?;
    crate::report::plots::heatmap(&dir.join(format!("{stem}.png")), title, names, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_layout_and_quoting() {
        let csv = to_csv(&["cat".into(), "dog, big".into()], &[vec![5, 1], vec![0, 4]]);
        assert_eq!(csv, "true\\predicted,cat,\"dog, big\"\ncat,5,1\n\"dog, big\",0,4\n");
    }
}
