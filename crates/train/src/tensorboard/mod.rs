//! TensorBoard event files: scalars, images and histograms of a training run,
//! written so that stock TensorBoard (`tensorboard --logdir runs/`) shows them.
//!
//! TensorBoard shows the scalars as curves over the step (SCALARS tab), each
//! image tag as a slider over the steps (IMAGES tab) and each histogram tag as
//! stacked distributions over the steps (HISTOGRAMS and DISTRIBUTIONS tabs).
//!
//! The format is TensorFlow's: a file of TFRecords, each holding one
//! protobuf `Event`. We encode the messages with `prost` (hand-written
//! `#[derive(prost::Message)]` structs whose field numbers are those of
//! TensorFlow's `event.proto` and `summary.proto`, so no protoc at build time)
//! and checksum the records with the `crc32c` crate. Both are maintained,
//! tested implementations of exactly what TensorBoard's reader checks (the
//! protobuf wire format, CRC-32C), so we do not carry our own encoder; and the
//! same code reads files back ([`read_events`]) so tests and tools can check
//! every length, both CRCs and the decoding of every record.
//!
//! Record framing (little-endian): `u64` length, `u32` masked CRC-32C of
//! those 8 bytes, the data, `u32` masked CRC-32C of the data, where
//! `mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` (wrapping).

mod proto;
#[cfg(test)]
mod tests;

use crate::error::io;
use crate::{Error, Result};
use prost::Message;
pub use proto::{
    event, summary, Event, HistogramProto, PluginData, SessionLog, SessionStatus, Summary,
    SummaryMetadata,
};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `file_version` of the first event of every file. Version 2 tells
/// TensorBoard to honour `SessionLog` START events ([`EventWriter::restart_at`]).
pub const FILE_VERSION: &str = "brain.Event:2";

/// `mask(crc32c(data))`, the checksum TFRecord stores.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    // (c >> 15) | (c << 17), then the TFRecord mask delta.
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn invalid(msg: String) -> Error {
    Error::Invalid {
        op: "tensorboard",
        msg,
    }
}

/// Host name for file names: `/proc/sys/kernel/hostname`, `$HOSTNAME`, or
/// `localhost`; `/` and whitespace are replaced so it stays one path part.
fn hostname() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    name.replace(|c: char| c == '/' || c == '\\' || c.is_whitespace(), "_")
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes one TensorBoard event file through a buffer.
///
/// Every `add_*` call appends one `Event` holding one `Summary.Value`: a
/// scalar costs one record of about 40 bytes plus the tag. Records reach the
/// OS on [`flush`](Self::flush), when the buffer fills, and on drop (best
/// effort: errors on drop are ignored, call `flush` to see them).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl EventWriter {
    /// Creates `dir` (and parents) and a new file
    /// `events.out.tfevents.{unix seconds}.{hostname}.{pid}.{counter}` in it,
    /// starting with the `file_version` event (already flushed, so the file
    /// is valid from the start). The counter is per process and never reuses
    /// an existing name.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(dir).map_err(io(dir))?;
        let secs = now() as u64;
        let (host, pid) = (hostname(), std::process::id());
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut w = EventWriter {
                        path,
                        out: BufWriter::new(file),
                        buf: Vec::new(),
                    };
                    w.write_event(0, event::What::FileVersion(FILE_VERSION.to_string()))?;
                    w.flush()?;
                    return Ok(w);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the scalar `value` of series `tag` at `step`. Stored as
    /// `simple_value` (f32, what TensorBoard's SCALARS tab reads), so it is
    /// rounded to f32; NaN and infinities are stored as they are.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        self.add_value(tag, summary::value::Value::SimpleValue(value as f32), step)
    }

    /// Appends an image of `height` rows of `width` pixels with `channels`
    /// 8-bit samples each: `pixels` is row-major `[height][width][channels]`
    /// (length `height * width * channels`), channels 1 (gray), 2 (gray +
    /// alpha), 3 (RGB) or 4 (RGBA). Stored PNG-encoded.
    pub fn add_image(
        &mut self,
        tag: &str,
        width: usize,
        height: usize,
        channels: usize,
        pixels: &[u8],
        step: u64,
    ) -> Result<()> {
        let color = match channels {
            1 => png::ColorType::Grayscale,
            2 => png::ColorType::GrayscaleAlpha,
            3 => png::ColorType::Rgb,
            4 => png::ColorType::Rgba,
            _ => {
                return Err(invalid(format!(
                    "image {tag:?}: {channels} channels, expected 1 to 4"
                )))
            }
        };
        let dims = (i32::try_from(width), i32::try_from(height));
        let (Ok(w), Ok(h)) = dims else {
            return Err(invalid(format!(
                "image {tag:?}: {width}x{height} is too large"
            )));
        };
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels));
        if w == 0 || h == 0 || expected != Some(pixels.len()) {
            return Err(invalid(format!(
                "image {tag:?}: {width}x{height}x{channels} needs {} bytes (and a non-zero size), got {}",
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                pixels.len()
            )));
        }
        let mut encoded = Vec::new();
        let png_err = |e: png::EncodingError| invalid(format!("image {tag:?}: PNG encoding: {e}"));
        let mut encoder = png::Encoder::new(&mut encoded, w as u32, h as u32);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(pixels).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
        let image = summary::Image {
            height: h,
            width: w,
            colorspace: channels as i32,
            encoded_image_string: encoded,
        };
        self.add_value(tag, summary::value::Value::Image(image), step)
    }

    /// Appends a histogram of `values` (any length, any order) with
    /// TensorFlow's default buckets: edges `0, ±1e-12 * 1.1^k` up to `±1e20`
    /// and `±f64::MAX` (so about 10% wide, the same for every step). Only the
    /// buckets from the one holding the smallest value to the one holding
    /// the largest are stored, each run of empty buckets in between merged
    /// into one. NaN and infinities are skipped: `num`, `sum`, `min`, `max`
    /// count only the finite values. With no finite value it stores `num = 0`
    /// and one empty bucket at 0.
    pub fn add_histogram(&mut self, tag: &str, values: &[f64], step: u64) -> Result<()> {
        self.add_value(tag, summary::value::Value::Histo(histogram(values)), step)
    }

    /// Appends a `SessionLog` START at `step`: TensorBoard then drops every
    /// event it read before this one (all tags, all earlier files of the run
    /// directory) whose step is `>= step`. Call it when a run resumes from a
    /// checkpoint of `step`, so the steps done after that checkpoint by the
    /// interrupted run are not shown twice.
    pub fn restart_at(&mut self, step: u64) -> Result<()> {
        let log = SessionLog {
            status: SessionStatus::Start as i32,
            ..SessionLog::default()
        };
        self.write_event(step_i64(step)?, event::What::SessionLog(log))
    }

    /// Hands the buffered records to the OS (no fsync).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(io(&self.path))
    }

    fn add_value(&mut self, tag: &str, value: summary::value::Value, step: u64) -> Result<()> {
        if tag.is_empty() {
            return Err(invalid("empty tag".to_string()));
        }
        let summary = Summary {
            value: vec![summary::Value {
                tag: tag.to_string(),
                metadata: None,
                value: Some(value),
            }],
        };
        self.write_event(step_i64(step)?, event::What::Summary(summary))
    }

    fn write_event(&mut self, step: i64, what: event::What) -> Result<()> {
        let event = Event {
            wall_time: now(),
            step,
            what: Some(what),
        };
        // One record, built in `buf` and written with one call:
        // length, its masked CRC, the event, the event's masked CRC.
        self.buf.clear();
        self.buf.resize(12, 0);
        event.encode(&mut self.buf).expect("a Vec grows as needed");
        let len = (self.buf.len() as u64 - 12).to_le_bytes();
        self.buf[..8].copy_from_slice(&len);
        self.buf[8..12].copy_from_slice(&masked_crc(&len).to_le_bytes());
        let crc = masked_crc(&self.buf[12..]);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.buf).map_err(io(&self.path))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn step_i64(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| invalid(format!("step {step} is above i64::MAX")))
}

/// TensorFlow's default histogram bucket limits (`histogram.cc`): 1551
/// increasing right edges from `-f64::MAX` to `f64::MAX`, 0 in the middle.
fn default_limits() -> &'static [f64] {
    static LIMITS: OnceLock<Vec<f64>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1.0e-12;
        while v < 1.0e20 {
            pos.push(v);
            v *= 1.1;
        }
        pos.push(f64::MAX);
        let mut all: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
        all.push(0.0);
        all.extend(pos);
        all
    })
}

/// The [`HistogramProto`] that [`EventWriter::add_histogram`] stores.
fn histogram(values: &[f64]) -> HistogramProto {
    let limits = default_limits();
    let mut counts = vec![0.0f64; limits.len()];
    let mut h = HistogramProto {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        ..HistogramProto::default()
    };
    for &v in values.iter().filter(|v| v.is_finite()) {
        // Bucket i holds [limits[i - 1], limits[i]).
        let i = limits.partition_point(|&l| l <= v).min(limits.len() - 1);
        counts[i] += 1.0;
        h.min = h.min.min(v);
        h.max = h.max.max(v);
        h.num += 1.0;
        h.sum += v;
        h.sum_squares += v * v;
    }
    let Some(first) = counts.iter().position(|&c| c > 0.0) else {
        return HistogramProto {
            bucket_limit: vec![0.0],
            bucket: vec![0.0],
            ..HistogramProto::default()
        };
    };
    let last = counts.iter().rposition(|&c| c > 0.0).unwrap_or(first);
    let mut i = first;
    while i <= last {
        let mut end = i;
        if counts[i] == 0.0 {
            while counts[end + 1] == 0.0 {
                end += 1;
            }
        }
        h.bucket_limit.push(limits[end]);
        h.bucket.push(counts[end]);
        i = end + 1;
    }
    h
}

/// Reads and checks every record of the event file at `path`: both CRCs of
/// each record, that its length fits in the file, and that it decodes as an
/// [`Event`]. A file cut inside a record, or with any byte changed, is
/// `Err(Error::Corrupt)` naming the file, the record index and its byte
/// offset (never a partial list). A file cut exactly between records cannot
/// be told from a shorter file and reads as the records it has.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let data = fs::read(path).map_err(io(path))?;
    let corrupt = |index: usize, offset: usize, what: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("record {index} at byte {offset}: {what}"),
    };
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (index, rest) = (events.len(), &data[pos..]);
        if rest.len() < 12 {
            let what = format!("cut short: {} of the 12 header bytes", rest.len());
            return Err(corrupt(index, pos, what));
        }
        let crc = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if masked_crc(&rest[..8]) != crc(&rest[8..12]) {
            return Err(corrupt(index, pos, "length CRC mismatch".to_string()));
        }
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let body = &rest[12..];
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n.checked_add(4).is_some_and(|end| end <= body.len()))
            .ok_or_else(|| {
                let what = format!(
                    "cut short: {len} data bytes + 4 CRC bytes, {} left",
                    body.len()
                );
                corrupt(index, pos, what)
            })?;
        if masked_crc(&body[..len]) != crc(&body[len..len + 4]) {
            return Err(corrupt(index, pos, "data CRC mismatch".to_string()));
        }
        let event = Event::decode(&body[..len])
            .map_err(|e| corrupt(index, pos, format!("not an Event: {e}")))?;
        events.push(event);
        pos += 12 + len + 4;
    }
    Ok(events)
}

/// `(tag, step, value)` of every scalar (`simple_value`) of the event file at
/// `path`, in file order; checked as by [`read_events`]. Values are the
/// stored f32 widened to f64.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, u64, f64)>> {
    let mut scalars = Vec::new();
    for (index, event) in read_events(path)?.into_iter().enumerate() {
        let Some(event::What::Summary(summary)) = event.what else {
            continue;
        };
        for value in summary.value {
            if let Some(summary::value::Value::SimpleValue(v)) = value.value {
                let step = u64::try_from(event.step).map_err(|_| Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("record {index}: negative step {}", event.step),
                })?;
                scalars.push((value.tag, step, f64::from(v)));
            }
        }
    }
    Ok(scalars)
}
