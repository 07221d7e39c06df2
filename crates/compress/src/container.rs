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
//! | 1 | format version (1) |
//! | 16 | the model: SHA-256 of its checkpoint file, first 16 bytes |
//! | 1 | pixel coding: 0 binary, 1 levels |
//! | 1 | the byte of a binary 1 (0 for levels) |
//! | 1 | latent bucket bits |
//! | 1 | rank r of the IDX dimensions |
//! | 4 r | the IDX dimensions (count, rows, columns, ...) |
//! | 8 | the data: SHA-256 of the original IDX bytes, first 8 bytes |
//! | 4 | number of ANS words w |
//! | 4 | header check: SHA-256 of the bytes above, first 4 bytes |
//! | 4 w | the ANS words |
//!
//! The header check catches a damaged header (a count of images that would
//! make decoding run long) before anything is decoded; the data hash
//! catches damaged words after. A header is 54 bytes for MNIST's
//! [n, 28, 28].

use sha2::{Digest, Sha256};

use crate::{Error, Pixels, Result};

const MAGIC: &[u8; 4] = b"DGNZ";
const VERSION: u8 = 1;
/// The most pixels a file may hold (2 GiB), checked before decoding.
const MAX_PIXELS: usize = 1 << 31;

/// Everything in a compressed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// SHA-256 of the model's checkpoint (the first 16 bytes are stored).
    pub model_hash: [u8; 32],
    pub pixels: Pixels,
    pub bucket_bits: u8,
    /// The IDX file's dimensions: the image count first.
    pub dims: Vec<usize>,
    /// SHA-256 of the IDX bytes (the first 8 bytes are stored).
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
        let (code, one) = match self.pixels {
            Pixels::Binary { one } => (0, one),
            Pixels::Levels { .. } => (1, 0),
        };
        out.extend_from_slice(&[code, one, self.bucket_bits, rank]);
        for &d in &self.dims {
            let d = u32::try_from(d).map_err(|_| Error::Invalid(format!("dimension {d}")))?;
            out.extend_from_slice(&d.to_le_bytes());
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
        let pixels = match (r.byte("pixel coding")?, r.byte("binary one")?) {
            (0, one) if one != 0 => Pixels::Binary { one },
            // The model says which logistic; the file only says "levels".
            (1, 0) => Pixels::Levels { mixture: None },
            (code, one) => {
                return Err(Error::Corrupt(format!(
                    "unknown pixel coding {code} (one = {one})"
                )))
            }
        };
        let bucket_bits = r.byte("bucket bits")?;
        let rank = r.byte("rank")? as usize;
        let dims = (0..rank)
            .map(|_| r.u32("dimension").map(|d| d as usize))
            .collect::<Result<Vec<_>>>()?;
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
            pixels,
            bucket_bits,
            dims,
            data_hash,
            words,
        })
    }
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
