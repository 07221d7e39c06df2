//! The compressed file: a header that names the model and describes the
//! data, then the ANS words. Every field is checked on reading; a file
//! that is cut short, altered or from another model is an error that says
//! which, never a panic and never a wrong image (the SHA-256 of the
//! original bytes is checked after decoding).
//!
//! Layout (integers little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `DGNZ` |
//! | 1 | format version (2) |
//! | 16 | the model: SHA-256 of its checkpoint file, first 16 bytes |
//! | 1 | coding: 0 binary pixels, 1 8-bit levels (both bits-back), 2 a codec's latents (lossy); + 0x80 when file names follow the dimensions |
//! | 1 | the byte of a binary 1; for 8-bit levels, the largest error a pixel may take (0: lossless, see `Pixels::Levels`); 0 for a codec |
//! | 1 | latent bucket bits (0 for a codec) |
//! | 1 | rank r of the IDX dimensions |
//! | 4 r | the IDX dimensions (count, rows, columns, ...) |
//! | 4 + l | (only with 0x80) the images' file names: length l, then the UTF-8 names, one per image, each ended by a newline |
//! | 8 | the data: SHA-256 of the original IDX bytes (lossless) or of the coded latents as little-endian i32 (lossy), first 8 bytes |
//! | 4 | number of ANS words w |
//! | 4 | header check: SHA-256 of the bytes above, first 4 bytes |
//! | 4 w | the ANS words |
//!
//! The header check catches a damaged header (a count of images that would
//! make decoding run long) before anything is decoded; the data hash
//! catches damaged words after. A header is 54 bytes for MNIST's
//! [n, 28, 28] (plus the names of a folder's images).

use sha2::{Digest, Sha256};

use crate::{Error, Pixels, Result, MAX_NEAR};

/// How the images are coded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coding {
    /// Lossless: bits-back coding of the pixels with latent buckets.
    BitsBack { pixels: Pixels, bucket_bits: u8 },
    /// Lossy: a codec's rounded latents under its learned prior.
    Latents,
}

const MAGIC: &[u8; 4] = b"DGNZ";
/// 2: the first image's latent is its posterior's mode (1 decoded it from
/// an empty coder).
const VERSION: u8 = 2;
/// The most pixels a file may hold (2 GiB), checked before decoding.
const MAX_PIXELS: usize = 1 << 31;
/// The coding byte's flag for a names block.
const NAMED: u8 = 0x80;

/// Everything in a compressed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// SHA-256 of the model's checkpoint (the first 16 bytes are stored).
    pub model_hash: [u8; 32],
    pub coding: Coding,
    /// The IDX file's dimensions: the image count first.
    pub dims: Vec<usize>,
    /// The images' file names (a folder of PNGs), or none (an IDX file).
    pub names: Vec<String>,
    /// SHA-256 of the IDX bytes, or of a codec's latents (the first 8
    /// bytes are stored).
    pub data_hash: [u8; 32],
    pub words: Vec<u32>,
}

const MODEL_ID: usize = 16;
const DATA_ID: usize = 8;
const CHECK: usize = 4;

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Bytes as hex digits, for messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Container {
    /// Whether `hash` (a full SHA-256) is the data this file stores the
    /// prefix of.
    pub fn data_matches(&self, hash: &[u8; 32]) -> bool {
        self.data_hash[..DATA_ID] == hash[..DATA_ID]
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let rank = u8::try_from(self.dims.len())
            .map_err(|_| Error::Invalid(format!("{} dimensions", self.dims.len())))?;
        let mut out = Vec::with_capacity(96 + 4 * self.words.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.model_hash[..MODEL_ID]);
        let [code, one, bits] = match self.coding {
            Coding::BitsBack {
                pixels,
                bucket_bits,
            } => match pixels {
                Pixels::Binary { one } => [0, one, bucket_bits],
                Pixels::Levels { near, .. } => [1, near, bucket_bits],
            },
            Coding::Latents => [2, 0, 0],
        };
        let code = if self.names.is_empty() {
            code
        } else {
            code | NAMED
        };
        out.extend_from_slice(&[code, one, bits, rank]);
        for &d in &self.dims {
            let d = u32::try_from(d).map_err(|_| Error::Invalid(format!("dimension {d}")))?;
            out.extend_from_slice(&d.to_le_bytes());
        }
        if !self.names.is_empty() {
            check_names(&self.names, self.dims[0]).map_err(Error::Invalid)?;
            let block: String = self.names.iter().map(|n| format!("{n}\n")).collect();
            let len = u32::try_from(block.len())
                .map_err(|_| Error::Invalid("file names longer than 4 GiB".into()))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(block.as_bytes());
        }
        out.extend_from_slice(&self.data_hash[..DATA_ID]);
        let count = u32::try_from(self.words.len())
            .map_err(|_| Error::Invalid("more than 2^32 coded words".into()))?;
        out.extend_from_slice(&count.to_le_bytes());
        let check = sha256(&out);
        out.extend_from_slice(&check[..CHECK]);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        Ok(out)
    }

    /// Parses a compressed file; `model_hash` is the hash of the model that
    /// will decode it (another model's file is refused before any decoding).
    pub fn parse(bytes: &[u8], model_hash: &[u8; 32]) -> Result<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(Error::Corrupt(
                "not a deepgen compressed file (no DGNZ magic)".into(),
            ));
        }
        let version = r.byte("version")?;
        if version != VERSION {
            return Err(Error::Corrupt(format!(
                "format version {version}; this deepgen reads version {VERSION}"
            )));
        }
        let file_model = r.take(MODEL_ID, "model hash")?;
        if file_model != &model_hash[..MODEL_ID] {
            return Err(Error::WrongModel {
                file: hex(file_model),
                given: hex(&model_hash[..MODEL_ID]),
            });
        }
        let (code, one) = (r.byte("coding")?, r.byte("binary one")?);
        let (named, code) = (code & NAMED != 0, code & !NAMED);
        let bucket_bits = r.byte("bucket bits")?;
        let bits_back = |pixels| Coding::BitsBack {
            pixels,
            bucket_bits,
        };
        let coding = match (code, one, bucket_bits) {
            (0, one, _) if one != 0 => bits_back(Pixels::Binary { one }),
            // The model says which logistic; the file only says "levels".
            (1, near, _) if near <= MAX_NEAR => bits_back(Pixels::Levels {
                mixture: None,
                near,
            }),
            (2, 0, 0) => Coding::Latents,
            (code, one, bits) => {
                return Err(Error::Corrupt(format!(
                    "unknown coding {code} (one = {one}, bucket bits {bits})"
                )))
            }
        };
        let rank = r.byte("rank")? as usize;
        let dims = (0..rank)
            .map(|_| r.u32("dimension").map(|d| d as usize))
            .collect::<Result<Vec<_>>>()?;
        let names = match named {
            false => Vec::new(),
            true => {
                let len = r.u32("names length")? as usize;
                let block = std::str::from_utf8(r.take(len, "file names")?)
                    .map_err(|_| Error::Corrupt("the file names are not UTF-8".into()))?;
                let names: Vec<String> = block.split_terminator('\n').map(String::from).collect();
                if !block.ends_with('\n') {
                    return Err(Error::Corrupt("the file names are cut".into()));
                }
                names
            }
        };
        let data_id = r.take(DATA_ID, "data hash")?;
        let count = r.u32("word count")? as usize;
        let header_end = r.at;
        if r.take(CHECK, "header check")? != &sha256(&bytes[..header_end])[..CHECK] {
            return Err(Error::Corrupt(
                "the header is damaged (its check fails)".into(),
            ));
        }
        let pixels_total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if rank < 2 || dims.contains(&0) || pixels_total.is_none_or(|p| p > MAX_PIXELS) {
            return Err(Error::Corrupt(format!("dimensions {dims:?}")));
        }
        if named {
            check_names(&names, dims[0]).map_err(Error::Corrupt)?;
        }
        // Checked against what is there before anything is allocated.
        let left = bytes.len() - r.at;
        if count.checked_mul(4) != Some(left) {
            return Err(Error::Corrupt(format!(
                "{count} words announced, {left} bytes follow (truncated or padded)"
            )));
        }
        let words = r.bytes[r.at..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut data_hash = [0; 32];
        data_hash[..DATA_ID].copy_from_slice(data_id);
        let mut model = [0; 32];
        model[..MODEL_ID].copy_from_slice(file_model);
        Ok(Container {
            model_hash: model,
            coding,
            dims,
            names,
            data_hash,
            words,
        })
    }
}

/// `names` are `count` plain file names: no directories, no line breaks,
/// no duplicates, so a folder can be written back from them.
fn check_names(names: &[String], count: usize) -> std::result::Result<(), String> {
    if names.len() != count {
        return Err(format!("{} file names for {count} images", names.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for n in names {
        let plain = !n.is_empty()
            && n != "."
            && n != ".."
            && !n.contains(['/', '\\', '\n', '\0'])
            && seen.insert(n.as_str());
        if !plain {
            return Err(format!("{n:?} is not a plain, unique file name"));
        }
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            Error::Corrupt(format!(
                "truncated: the file ends in its header ({what}, byte {})",
                self.at
            ))
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
}
