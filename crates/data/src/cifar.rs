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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
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

/// The archive's name, as downloaded.
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// The folder the archive unpacks to.
pub const BATCHES: &str = "cifar-10-batches-bin";

/// Where the batch files are: `dir` itself, or the archive's folder in it
/// (where `deepgen download cifar10` leaves them). Only the archive there
/// is an error that says how to unpack it.
pub fn batches_dir(dir: &Path) -> Result<PathBuf> {
    let has = |d: &Path| d.join("test_batch.bin").exists() || d.join("data_batch_1.bin").exists();
    let inner = dir.join(BATCHES);
    if has(dir) {
        return Ok(dir.to_path_buf());
    }
    if has(&inner) {
        return Ok(inner);
    }
    if !dir.join(ARCHIVE).exists() {
        // Missing files are named when they are read.
        return Ok(dir.to_path_buf());
    }
    Err(bad(
        &dir.join(ARCHIVE),
        format!(
            "the archive is not unpacked; `deepgen download cifar10 --dir {}` unpacks it (or `tar xzf` it there)",
            dir.display()
        ),
    ))
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
    let dir = batches_dir(dir)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in split_files(&dir, train) {
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

/// Unpacks `cifar-10-binary.tar.gz` into `dir` (which then holds
/// [`BATCHES`]). Entries that would land outside `dir` (absolute paths,
/// `..`) and links are refused, not written. The archive is unpacked into
/// a temporary folder renamed into place when complete, so an interrupted
/// unpacking never leaves a partial batch folder behind.
pub fn extract(archive: &Path, dir: &Path) -> Result<()> {
    let staging = dir.join(format!(".{BATCHES}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let unpacked = unpack(archive, &staging).and_then(|()| {
        let (from, to) = (staging.join(BATCHES), dir.join(BATCHES));
        if !from.is_dir() {
            return Err(bad(archive, format!("holds no {BATCHES} folder")));
        }
        let _ = std::fs::remove_dir_all(&to);
        std::fs::rename(&from, &to).map_err(io(&to))
    });
    let _ = std::fs::remove_dir_all(&staging);
    unpacked
}

fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
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

    /// A tar.gz laid out like CIFAR-10's, with `records` records per batch.
    fn fake_archive(path: &Path, records: usize) {
        let file = std::fs::File::create(path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let names = (1..=5).map(|i| format!("data_batch_{i}.bin"));
        for name in names.chain(["test_batch.bin".to_string()]) {
            let body: Vec<u8> = (0..records)
                .flat_map(|r| {
                    std::iter::once((r % 10) as u8).chain(std::iter::repeat_n(7, RECORD - 1))
                })
                .collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("{BATCHES}/{name}"), &body[..])
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn a_downloaded_archive_unpacks_and_loads_from_its_folder() {
        let dir = std::env::temp_dir().join(format!("deepgen-cifar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join(ARCHIVE);
        fake_archive(&archive, 3);
        // Only the archive: the error says how to unpack it.
        let e = load_split(&dir, false).unwrap_err().to_string();
        assert!(
            e.contains("not unpacked") && e.contains("deepgen download cifar10"),
            "{e}"
        );
        extract(&archive, &dir).unwrap();
        // No staging folder is left, and `dir` itself now loads.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        let test = load_split(&dir, false).unwrap();
        assert_eq!(crate::Dataset::len(&test), 3);
        let train = load_split(&dir, true).unwrap();
        assert_eq!(crate::Dataset::len(&train), 15);
        // Unpacking again replaces the folder.
        extract(&archive, &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
