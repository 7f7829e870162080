//! The errors that stop a dataset from opening. Each names the path it is about. (Single bad
//! images are not errors: they are skipped and counted, see [`crate::dataset::Skipped`].)

use std::path::PathBuf;

/// Why a dataset could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no usable image found ({detail})")]
    Empty { path: PathBuf, detail: String },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl DatasetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format { path: path.into(), reason: reason.into() }
    }
}
