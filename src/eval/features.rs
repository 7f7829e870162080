//! Feature extraction for evaluation: every image's deterministic evaluation view (centred
//! crop, resize, normalize) through the backbone, in batches on the chosen device — or, for
//! the `pixels` baseline, the normalized view itself, flattened.

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use selfsup_augment::Augmenter;

use super::collapse::Embeddings;
use crate::data::{Dataset, Images};
use crate::model::Encoder;

/// Features of a dataset, in dataset order, with its labels.
#[derive(Clone, Debug)]
pub struct Features {
    pub emb: Embeddings,
    pub labels: Vec<Option<u32>>,
}

impl Features {
    pub fn n(&self) -> usize {
        self.emb.n
    }

    pub fn dim(&self) -> usize {
        self.emb.d
    }

    /// Labels, which evaluation requires; `None` if any image has none.
    pub fn required_labels(&self) -> Option<Vec<u32>> {
        self.labels.iter().copied().collect()
    }
}

/// What produces features.
pub enum Extractor<'a> {
    /// A backbone on a device (in inference mode: a plain device, or a model from `valid()`).
    Encoder(&'a Encoder, &'a Device),
    /// The normalized pixels of the evaluation view.
    Pixels,
}

fn progress(n: usize, verbose: bool, what: &str) -> ProgressBar {
    if !verbose {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Extracts features of `indices` of `ds` (all images when `None`), `batch` at a time.
pub fn extract(
    ex: &Extractor<'_>,
    aug: &Augmenter,
    ds: &Dataset,
    indices: Option<&[usize]>,
    batch: usize,
    verbose: bool,
) -> Features {
    let all: Vec<usize>;
    let indices = match indices {
        Some(i) => i,
        None => {
            all = (0..ds.len()).collect();
            &all
        }
    };
    let size = aug.size();
    let len = aug.view_len();
    let pb = progress(indices.len(), verbose, "features");
    let mut values = Vec::new();
    let mut dim = 0;
    for chunk in indices.chunks(batch.max(1)) {
        let mut views = vec![0.0f32; chunk.len() * len];
        aug.eval_batch(&Images(ds), chunk, &mut views);
        match ex {
            Extractor::Pixels => {
                dim = len;
                values.extend_from_slice(&views);
            }
            Extractor::Encoder(encoder, device) => {
                let x = Tensor::<4>::from_data(TensorData::new(views, [chunk.len(), 3, size, size]), *device);
                let h = encoder.backbone.forward(x);
                dim = h.dims()[1];
                values.extend(h.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 features"));
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Features {
        emb: Embeddings::new(indices.len(), dim, values),
        labels: indices.iter().map(|&i| ds.label(i)).collect(),
    }
}
