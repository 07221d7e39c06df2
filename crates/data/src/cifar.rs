//! CIFAR-10, binary version: records of 1 label byte and 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, each row-major 32x32).

use std::path::{Path, PathBuf};

use crate::{Error, InMemory, Pixels, Result};

const RECORD: usize = 1 + 3 * 32 * 32;

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Parses one batch file's bytes into (pixels, labels).
pub fn parse_batch(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u16>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(bad(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte records",
                bytes.len()
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(bytes.len() / RECORD * (RECORD - 1));
    let mut labels = Vec::with_capacity(bytes.len() / RECORD);
    for (i, r) in bytes.chunks_exact(RECORD).enumerate() {
        if r[0] >= 10 {
            return Err(bad(
                path,
                format!("record {i} has label {}, not a class 0..10", r[0]),
            ));
        }
        labels.push(r[0] as u16);
        pixels.extend_from_slice(&r[1..]);
    }
    Ok((pixels, labels))
}

/// The batch files of a split in `dir` (the `cifar-10-batches-bin` folder).
pub fn split_files(dir: &Path, train: bool) -> Vec<PathBuf> {
    if train {
        (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect()
    } else {
        vec![dir.join("test_batch.bin")]
    }
}

/// Loads the train (50,000) or test (10,000) split: items [3, 32, 32], 10 classes.
pub fn load_split(dir: &Path, train: bool) -> Result<InMemory> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in split_files(dir, train) {
        let bytes = std::fs::read(&f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        let (p, l) = parse_batch(&f, &bytes)?;
        pixels.extend(p);
        labels.extend(l);
    }
    InMemory::new(Pixels::U8(pixels), &[3, 32, 32], Some((labels, 10)))
}

/// Unpacks `cifar-10-binary.tar.gz` into `dir`. Entries that would land
/// outside `dir` (absolute paths, `..`) and links are refused, not written.
pub fn extract(archive: &Path, dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in tar.entries().map_err(io(archive))? {
        let mut entry = entry.map_err(io(archive))?;
        let name = entry.path().map_err(io(archive))?.into_owned();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(
                archive,
                format!("refusing entry {} of type {kind:?}", name.display()),
            ));
        }
        // unpack_in refuses paths that escape `dir` and returns false for them.
        if !entry.unpack_in(dir).map_err(io(archive))? {
            return Err(bad(
                archive,
                format!(
                    "refusing entry {} outside the target folder",
                    name.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_bad_ones_are_named() {
        let mut bytes = vec![3u8];
        bytes.extend(vec![7u8; RECORD - 1]);
        let (p, l) = parse_batch(Path::new("b.bin"), &bytes).unwrap();
        assert_eq!((p.len(), l), (3072, vec![3]));
        let err = parse_batch(Path::new("b.bin"), &bytes[..100])
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.bin") && err.contains("records"), "{err}");
        bytes[0] = 12;
        assert!(parse_batch(Path::new("b.bin"), &bytes)
            .unwrap_err()
            .to_string()
            .contains("label 12"));
    }
}
