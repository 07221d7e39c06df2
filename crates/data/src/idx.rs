//! The IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST), raw or gzip.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (0x08
//! for unsigned bytes), the number of dimensions — then one u32 per
//! dimension, then the values. Everything is checked before anything is
//! kept: the magic, the dimensions, the body length, and that images and
//! labels agree in count.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, InMemory, Pixels, Result};

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads a file, inflating it when it starts with the gzip magic. A gzip
/// stream is inflated no further than its IDX header says the file holds
/// (and one byte more: a stream that has it is refused), so a small file
/// that inflates to gigabytes is refused after a few bytes, not after
/// taking the memory.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let corrupt = |e: std::io::Error| bad(path, format!("corrupt gzip stream: {e}"));
    let mut stream = flate2::read::GzDecoder::new(&raw[..]);
    let mut out = Vec::new();
    // The magic and rank, then the dimensions: the rest's length follows.
    (&mut stream)
        .take(4)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() == 4 && out[0] == 0 && out[1] == 0 {
        let rank = out[3] as u64;
        (&mut stream)
            .take(4 * rank)
            .read_to_end(&mut out)
            .map_err(corrupt)?;
        let body = declared_body(path, &out)?;
        let header = out.len() as u64;
        (&mut stream)
            .take(body.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(corrupt)?;
        if out.len() as u64 > header + body {
            return Err(bad(
                path,
                format!("the gzip stream inflates past the {body} bytes its IDX header describes (a gzip bomb, or a damaged file); inflating stopped there"),
            ));
        }
    } else {
        // Not IDX: parse() names what it is; a few bytes suffice for that.
        (&mut stream)
            .take(64)
            .read_to_end(&mut out)
            .map_err(corrupt)?;
    }
    Ok(out)
}

/// The big-endian u32 dimensions of a header (the bytes after the magic).
fn dims(bytes: &[u8]) -> Vec<usize> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect()
}

/// The body length an IDX header declares (when the header is complete),
/// checked against the memory budget before any of it is inflated.
fn declared_body(path: &Path, header: &[u8]) -> Result<u64> {
    let dims = dims(&header[4..]);
    let bytes = deepgen_tensor::budget::shape_bytes(&dims, 1);
    deepgen_tensor::budget::check(&format!("{}: dimensions {dims:?}", path.display()), bytes)?;
    Ok(bytes as u64)
}

/// The IDX header of unsigned bytes with `dims` (canonical, so a parsed
/// file's header is rebuilt byte for byte); the bytes follow it.
pub fn header(dims: &[usize]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out
}

/// Parses IDX bytes; `path` names the source in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Idx> {
    if bytes.len() < 4 {
        return Err(bad(
            path,
            format!("too short for an IDX header ({} bytes)", bytes.len()),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] == 0 {
        return Err(bad(
            path,
            format!("not an unsigned-byte IDX file (magic {magic:#010x})"),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(
            path,
            format!("header of {rank} dimensions is truncated"),
        ));
    }
    let dims = dims(&bytes[4..header]);
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let body = bytes.len() - header;
    match expected {
        Some(n) if n == body => Ok(Idx {
            dims,
            data: bytes[header..].to_vec(),
        }),
        Some(n) if n > body => Err(bad(
            path,
            format!("truncated: dimensions {dims:?} need {n} bytes, found {body}"),
        )),
        Some(n) => Err(bad(
            path,
            format!(
                "{} bytes after the {n} that dimensions {dims:?} describe",
                body - n
            ),
        )),
        None => Err(bad(path, format!("dimensions {dims:?} overflow"))),
    }
}

/// Reads and parses an IDX file (raw or gzip).
pub fn read(path: &Path) -> Result<Idx> {
    parse(path, &read_maybe_gzip(path)?)
}

/// The standard file names of a split, with or without `.gz`.
pub fn split_files(dir: &Path, train: bool) -> (PathBuf, PathBuf) {
    let prefix = if train { "train" } else { "t10k" };
    let pick = |stem: String| {
        let gz = dir.join(format!("{stem}.gz"));
        if gz.exists() {
            gz
        } else {
            dir.join(stem)
        }
    };
    (
        pick(format!("{prefix}-images-idx3-ubyte")),
        pick(format!("{prefix}-labels-idx1-ubyte")),
    )
}

/// Loads an MNIST-family split from its image and label files: items
/// [1, rows, cols], 10 classes. Counts must agree and labels be below 10.
pub fn load_pair(images: &Path, labels: &Path) -> Result<InMemory> {
    let im = read(images)?;
    let lb = read(labels)?;
    if im.dims.len() != 3 {
        return Err(bad(
            images,
            format!("expected [count, rows, cols], got dimensions {:?}", im.dims),
        ));
    }
    if lb.dims.len() != 1 {
        return Err(bad(
            labels,
            format!("expected [count], got dimensions {:?}", lb.dims),
        ));
    }
    if im.dims[0] != lb.dims[0] {
        return Err(bad(
            labels,
            format!(
                "{} labels for {} images in {}",
                lb.dims[0],
                im.dims[0],
                images.display()
            ),
        ));
    }
    if let Some(&l) = lb.data.iter().find(|&&l| l >= 10) {
        return Err(bad(labels, format!("label {l} is not a digit class 0..10")));
    }
    let labels = lb.data.iter().map(|&l| l as u16).collect();
    InMemory::new(
        Pixels::U8(im.data),
        &[1, im.dims[1], im.dims[2]],
        Some((labels, 10)),
    )
}

/// Loads the train or test split of an MNIST-family folder (standard names, raw or gzip).
pub fn load_split(dir: &Path, train: bool) -> Result<InMemory> {
    let (images, labels) = split_files(dir, train);
    load_pair(&images, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_inflated_only_as_far_as_its_header_says() {
        let dir = std::env::temp_dir().join(format!("deepgen-idx-bomb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 10 images of 28x28 declared, 64 MiB of zeros in the stream.
        let mut raw = idx_bytes(&[10, 28, 28], &[]);
        raw.resize(raw.len() + (64 << 20), 0);
        let path = dir.join("bomb.gz");
        std::fs::write(&path, gzip(&raw)).unwrap();
        let e = read_maybe_gzip(&path).unwrap_err().to_string();
        assert!(
            e.contains("inflates past the 7840 bytes its IDX header describes"),
            "{e}"
        );
        // A header that declares more than the memory budget is refused
        // before its body is inflated.
        let huge = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]);
        std::fs::write(&path, gzip(&huge)).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("memory budget"), "{e}");
        // A well-formed gzip IDX still reads whole.
        let good = idx_bytes(&[2, 2], &[1, 2, 3, 4]);
        std::fs::write(&path, gzip(&good)).unwrap();
        assert_eq!(read(&path).unwrap().data, [1, 2, 3, 4]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn parses_and_rejects_as_designed() {
        let p = Path::new("t.idx");
        let ok = parse(p, &idx_bytes(&[2, 2], &[1, 2, 3, 4])).unwrap();
        assert_eq!(ok.dims, vec![2, 2]);
        let magic = parse(p, &[0, 0, 9, 1, 0, 0, 0, 1, 5])
            .unwrap_err()
            .to_string();
        assert!(
            magic.contains("t.idx") && magic.contains("magic 0x00000901"),
            "{magic}"
        );
        let short = parse(p, &idx_bytes(&[2, 2], &[1, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(short.contains("truncated"), "{short}");
        let long = parse(p, &idx_bytes(&[1], &[1, 2])).unwrap_err().to_string();
        assert!(long.contains("1 bytes after"), "{long}");
        assert!(parse(p, &[0, 0, 8, 3, 0]).is_err());
        assert!(parse(p, &idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[])).is_err());
    }
}
