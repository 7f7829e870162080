//! What a person looks at after a run: charts ([`plots`]), the embedding map
//! ([`embedding_map`]), the confusion matrices as tables ([`confusion_table`]) and the
//! self-contained HTML report ([`html`]) that `selfsup report` writes into the run folder.

pub mod confusion_table;
pub mod embedding_map;
pub mod html;
pub mod plots;
