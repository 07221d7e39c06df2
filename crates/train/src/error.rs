use std::path::PathBuf;

/// Errors of the training runtime: each names the file, flag or step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the run (an event file, a checkpoint part) that does not
    /// read back as what was written.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A loss (or a gradient norm) that is NaN or infinite: the step was
    /// not taken. `epoch` and `batch` are 0-based; the message counts from 1.
    #[error("{}", non_finite(.what, .value, .epoch, .batch, .kept))]
    NonFinite {
        what: String,
        value: f64,
        epoch: Option<usize>,
        batch: Option<usize>,
        /// Where the last complete checkpoint is, if there is one.
        kept: Option<String>,
    },
    /// A parameter or buffer that is NaN or infinite, found before a save
    /// (so the last complete checkpoint stays the last good one).
    #[error("{module}: tensor `{tensor}` holds {value}; the weights diverged (try a smaller learning rate) and were not saved")]
    NonFiniteWeights {
        module: String,
        tensor: String,
        value: f64,
    },
    /// The run stopped on request ([`crate::interrupt`], Ctrl-C) after
    /// writing a checkpoint of where it was.
    #[error("interrupted: stopped at epoch {} batch {batch} with a checkpoint in {}; run the same command with --resume to continue", epoch + 1, checkpoint.display())]
    Interrupted {
        /// 0-based epoch, batches done in it.
        epoch: usize,
        batch: usize,
        checkpoint: PathBuf,
    },
    #[error(transparent)]
    Nn(#[from] deepgen_nn::Error),
    #[error(transparent)]
    Optim(#[from] deepgen_optim::Error),
    #[error(transparent)]
    Data(#[from] deepgen_data::Error),
    #[error(transparent)]
    Autograd(#[from] deepgen_autograd::Error),
    /// An error of the model crate whose step failed (its own enum, kept whole).
    #[error(transparent)]
    Model(Box<dyn std::error::Error + Send + Sync>),
}

impl From<deepgen_autograd::TensorError> for Error {
    fn from(e: deepgen_autograd::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

fn non_finite(
    what: &str,
    value: &f64,
    epoch: &Option<usize>,
    batch: &Option<usize>,
    kept: &Option<String>,
) -> String {
    let at = match (epoch, batch) {
        (Some(e), Some(b)) => format!(" at epoch {}, batch {}", e + 1, b + 1),
        (Some(e), None) => format!(" in epoch {}", e + 1),
        _ => String::new(),
    };
    let kept = match kept {
        Some(k) => format!("; the last good checkpoint is kept ({k})"),
        None => "; no checkpoint had been written yet".to_string(),
    };
    format!("training stopped: the {what} became {value}{at}{kept}")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` for I/O on `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
