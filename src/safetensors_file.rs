//! Writing safetensors files: named, typed tensors as little-endian bytes plus string metadata,
//! serialized in one place for the three writers (checkpoints, `export --format selfsup`, and
//! PyTorch `state_dict`s for `export --format torchvision`).

use std::collections::HashMap;

use anyhow::Result;
use safetensors::tensor::{Dtype, TensorView};

/// One tensor to write.
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Entry {
    /// An `f32` tensor.
    pub fn f32(name: String, shape: Vec<usize>, values: &[f32]) -> Self {
        Self { name, dtype: Dtype::F32, shape, bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }

    /// A scalar `i64` (PyTorch's `num_batches_tracked`).
    pub fn i64_scalar(name: String, value: i64) -> Self {
        Self { name, dtype: Dtype::I64, shape: Vec::new(), bytes: value.to_le_bytes().to_vec() }
    }
}

/// The file's bytes: `entries` (whose shapes and byte lengths must agree) and `meta`.
pub fn serialize(entries: &[Entry], meta: HashMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|e| Ok((e.name.clone(), TensorView::new(e.dtype, e.shape.clone(), &e.bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, Some(meta))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    #[test]
    fn entries_and_metadata_read_back() {
        let entries =
            vec![Entry::f32("a".into(), vec![2, 2], &[1.0, -2.0, 3.5, 0.25]), Entry::i64_scalar("n".into(), 7)];
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let bytes = serialize(&entries, meta).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["k"], "v");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let a = st.tensor("a").unwrap();
        assert_eq!((a.dtype(), a.shape()), (Dtype::F32, &[2usize, 2][..]));
        let floats: Vec<f32> = a.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(floats, [1.0, -2.0, 3.5, 0.25]);
        let n = st.tensor("n").unwrap();
        assert_eq!((n.dtype(), n.shape().len(), i64::from_le_bytes(n.data().try_into().unwrap())), (Dtype::I64, 0, 7));
        let bad = [Entry { name: "b".into(), dtype: Dtype::F32, shape: vec![3], bytes: vec![0; 8] }];
        assert!(serialize(&bad, HashMap::new()).is_err(), "a shape that disagrees with the bytes is refused");
    }
}
