//! Atomic file writes: the one place every deepgen crate writes a file
//! through (state dicts, run directories, pictures), so that a crash, a
//! full disk or Ctrl-C never leaves a half-written file at the final path.
//!
//! It lives in the bottom crate because both the layers' state dicts
//! (`deepgen-nn`) and the data / training crates write files, and neither
//! may depend on the other.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name `write_atomic` uses for `path` in this process:
/// `.NAME.tmp-PID` in the same folder (so the rename stays on one file
/// system).
pub fn temp_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path`. On error the temporary file is
/// removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("deepgen-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A folder that does not exist: an error, nothing written.
        assert!(write_atomic(&dir.join("no/such/b.bin"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
