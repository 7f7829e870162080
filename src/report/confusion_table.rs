//! The report's confusion matrices as HTML tables, side by side (small multiples: the pixels,
//! random-init and trained probes next to one another, each scaled to its share of the page).
//!
//! Each cell holds its row's percentage (true class → predicted class) on a blue ramp. Class
//! names are HTML text, so the reader's browser draws any script (a folder named `猫` included),
//! escaped everywhere; long names are cut with an ellipsis by the style sheet and shown whole
//! on hover (`title`), the column names upright in narrow columns. Past [`NUMBERS_UP_TO`]
//! classes the cells carry their value only on hover; past [`CELLS_UP_TO`] the table is left
//! out for the CSV beside it.

use std::fmt::Write as _;

use super::html::esc;

/// Percentages are written in the cells up to this many classes.
pub const NUMBERS_UP_TO: usize = 20;
/// Matrices with more classes than this are not drawn (the CSV holds them).
pub const CELLS_UP_TO: usize = 100;

/// One matrix: its title, the class names (label order) and `counts[true][predicted]`.
pub struct Matrix<'a> {
    pub title: &'a str,
    pub classes: &'a [String],
    pub counts: &'a [Vec<u64>],
}

/// The style sheet the tables need (once per page).
pub const STYLE: &str = ".cms{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}\
.cm{flex:1 1 300px;min-width:0}.cm h3{margin:.3em 0;font-size:1em}\
.cm table{border-collapse:collapse;table-layout:fixed;width:100%;margin:0;font-size:11px}\
.cm td,.cm th{border:1px solid #fff;padding:0;text-align:center;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;height:1.9em}\
.cm th{background:#fff;font-weight:normal}.cm th.row{text-align:right;padding-right:4px;width:28%}\
.cm th.col{writing-mode:vertical-rl;transform:rotate(180deg);height:7em;vertical-align:bottom;text-align:left;padding:2px 0}\
.cm .axis{font-size:10px;color:#666}";

fn cell_colour(f: f64) -> String {
    // White to the blue of the report's charts.
    let mix = |from: f64, to: f64| (from + (to - from) * f).round() as u8;
    format!("rgb({},{},{})", mix(255.0, 31.0), mix(255.0, 119.0), mix(255.0, 180.0))
}

/// The matrices as small multiples (an empty string when there are none).
pub fn small_multiples(matrices: &[Matrix]) -> String {
    if matrices.is_empty() {
        return String::new();
    }
    let mut h = String::from("<div class=\"cms\">");
    for m in matrices {
        let c = m.counts.len();
        let _ = write!(h, "<div class=\"cm\"><h3>{}</h3>", esc(m.title));
        if c > CELLS_UP_TO {
            let _ = write!(h, "<p>{c} classes: too many to draw; see <code>eval/confusion-*.csv</code>.</p></div>");
            continue;
        }
        let name = |i: usize| m.classes.get(i).cloned().unwrap_or_else(|| format!("class {i}"));
        let _ = write!(h, "<table><tr><th class=\"row axis\">true \\ predicted</th>");
        for j in 0..c {
            let _ = write!(h, "<th class=\"col\" title=\"{0}\">{0}</th>", esc(&name(j)));
        }
        h.push_str("</tr>");
        for (i, row) in m.counts.iter().enumerate() {
            let total = row.iter().sum::<u64>();
            let _ = write!(h, "<tr><th class=\"row\" title=\"{0} ({total} images)\">{0}</th>", esc(&name(i)));
            for (j, &v) in row.iter().enumerate() {
                let f = v as f64 / total.max(1) as f64;
                let ink = if f > 0.55 { "#fff" } else { "#222" };
                let text = if c <= NUMBERS_UP_TO { format!("{:.0}", 100.0 * f) } else { String::new() };
                let _ = write!(
                    h,
                    "<td style=\"background:{};color:{ink}\" title=\"{} → {}: {v} of {total} ({:.1}%)\">{text}</td>",
                    cell_colour(f),
                    esc(&name(i)),
                    esc(&name(j)),
                    100.0 * f
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
    }
    h.push_str("</div>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_hold_row_percentages_and_every_name_is_escaped() {
        let classes: Vec<String> = ["猫", "<b>dog</b>"].map(String::from).to_vec();
        let counts = vec![vec![3, 1], vec![0, 5]];
        let h = small_multiples(&[
            Matrix { title: "trained", classes: &classes, counts: &counts },
            Matrix { title: "pixels & co", classes: &classes, counts: &counts },
        ]);
        assert_eq!(h.matches("<table>").count(), 2);
        assert!(h.contains(">75</td>") && h.contains(">25</td>") && h.contains(">0</td>") && h.contains(">100</td>"));
        assert!(h.contains("猫") && h.contains("&lt;b&gt;dog&lt;/b&gt;") && !h.contains("<b>dog"));
        assert!(h.contains("pixels &amp; co"));
        // A full row is the darkest blue, an empty cell white.
        assert!(h.contains("background:rgb(31,119,180)") && h.contains("background:rgb(255,255,255)"));
        assert_eq!(small_multiples(&[]), "");
    }

    #[test]
    fn many_classes_keep_values_on_hover_and_very_many_are_left_to_the_csv() {
        let classes: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        let counts: Vec<Vec<u64>> = (0..30).map(|i| (0..30).map(|j| u64::from(i == j)).collect()).collect();
        let h = small_multiples(&[Matrix { title: "t", classes: &classes, counts: &counts }]);
        assert!(!h.contains(">100</td>") && h.contains("c3 → c3: 1 of 1 (100.0%)"));
        let classes: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let counts: Vec<Vec<u64>> = vec![vec![0; 101]; 101];
        let h = small_multiples(&[Matrix { title: "t", classes: &classes, counts: &counts }]);
        assert!(!h.contains("<table>") && h.contains("101 classes"));
    }
}
