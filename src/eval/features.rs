//! Feature extraction for evaluation: every image's deterministic evaluation view (centred
//! crop, resize, normalize) through the backbone, in batches on the chosen device — or, for
//! the `pixels` baseline, the normalized view itself, flattened. Under several ranks
//! (`mpirun … selfsup knn|probe|embed`) each rank extracts its share of every round of
//! `batch × ranks` images and the rounds' features are gathered, so every rank ends with all of
//! them, in dataset order.

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use selfsup_augment::Augmenter;

use super::collapse::Embeddings;
use crate::data::{Dataset, Images};
use crate::dist::Collective;
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

/// The normalized evaluation views (`[n, 3, size, size]`, CHW) of `indices`: what the
/// backbone sees (and what an exported model expects as input).
pub fn eval_views(aug: &Augmenter, ds: &Dataset, indices: &[usize]) -> Vec<f32> {
    let mut views = vec![0.0f32; indices.len() * aug.view_len()];
    aug.eval_batch(&Images(ds), indices, &mut views);
    views
}

/// Features of `chunk` (of `aug.view_len()` values each for the pixels): values and dimension.
fn features_of(ex: &Extractor<'_>, aug: &Augmenter, ds: &Dataset, chunk: &[usize]) -> (Vec<f32>, usize) {
    let (size, len) = (aug.size(), aug.view_len());
    if chunk.is_empty() {
        return (Vec::new(), 0);
    }
    let views = eval_views(aug, ds, chunk);
    match ex {
        Extractor::Pixels => (views, len),
        Extractor::Encoder(encoder, device) => {
            let x = Tensor::<4>::from_data(TensorData::new(views, [chunk.len(), 3, size, size]), *device);
            let h = encoder.backbone.forward(x);
            let dim = h.dims()[1];
            (h.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 features"), dim)
        }
    }
}

/// Extracts features of `indices` of `ds` (all images when `None`), `batch` at a time on each
/// rank of `world` (every rank must call this alike; `&crate::dist::Single` for one process).
pub fn extract(
    world: &dyn Collective,
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
    let (rank, ranks) = (world.rank(), world.size());
    let pb = progress(indices.len(), verbose, "features");
    let mut values = Vec::new();
    let mut dim = 0;
    for round in indices.chunks(batch.max(1) * ranks) {
        let per = round.len().div_ceil(ranks);
        let mine = &round[(rank * per).min(round.len())..((rank + 1) * per).min(round.len())];
        let (v, d) = features_of(ex, aug, ds, mine);
        if ranks == 1 {
            values.extend(v);
            dim = d;
        } else {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let gathered = world.all_gather_bytes(&bytes);
            let floats: usize = gathered.iter().map(|b| b.len() / 4).sum();
            dim = floats / round.len();
            for b in gathered {
                values.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            }
        }
        pb.inc(round.len() as u64);
    }
    pb.finish_and_clear();
    Features {
        emb: Embeddings::new(indices.len(), dim, values),
        labels: indices.iter().map(|&i| ds.label(i)).collect(),
    }
}
