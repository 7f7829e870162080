//! Writing NumPy `.npy` files (format version 1.0): a little-endian `float32` C-order array, so
//! `numpy.load("emb.npy")` reads embeddings with no other dependency.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

/// The file bytes of a `rows × cols` float32 array.
pub fn encode_f32(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    assert_eq!(values.len(), rows * cols, "{rows} x {cols} values");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.write_all(&v.to_le_bytes()).expect("writing to a Vec");
    }
    out
}

/// Writes a `rows × cols` float32 array to `path` atomically.
pub fn write_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) -> Result<()> {
    crate::atomic::write_bytes(path, &encode_f32(rows, cols, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let bytes = encode_f32(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, -1.5]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        let data: Vec<f32> = bytes[10 + hlen..].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(data, vec![1.0, 2.0, 3.0, 4.0, 5.0, -1.5]);
    }
}
