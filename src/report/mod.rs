//! What a person looks at after a run: charts ([`plots`]) and the self-contained HTML report
//! ([`html`]) that `selfsup report` writes into the run folder.

pub mod html;
pub mod plots;
