//! Verified downloads of the public data sets.
//!
//! Every file we fetch is listed here, in code, with its size, its SHA-256
//! and the places to fetch it from (the official address first, then
//! mirrors). A file is streamed to a temporary name in the target folder
//! while it is hashed, and renamed to its final name only once its length
//! and SHA-256 match; so the final path never holds a partial or corrupt
//! download. A file already there with the right SHA-256 is kept as it is.
//!
//! Failures are handled per source: a server error or a transfer cut short
//! is retried a few times with a growing pause; a wrong checksum or a 4xx
//! goes straight to the next mirror. When every source fails, the error
//! names the file and what happened at each address; when none could even
//! be reached, it says so in one line.
//!
//! `cargo xtask download` and `deepgen download` are thin wrappers around
//! [`download`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One file of the table below: its name, exact size in bytes and SHA-256.
struct Entry {
    name: &'static str,
    size: u64,
    sha256: &'static str,
}

/// One data set: where its files live and what they must hash to.
struct Source {
    dataset: &'static str,
    /// Base addresses, each ending in `/`; a file's URL is base + name.
    mirrors: &'static [&'static str],
    files: &'static [Entry],
}

// Sizes and SHA-256 values as listed by tensorflow-datasets' url_checksums
// (mnist.txt, fashion_mnist.txt, kmnist.txt, cifar10.txt) and, for the IDX
// files, torchvision's prototype MNIST builders; both lists agree.
const SOURCES: &[Source] = &[
    Source {
        dataset: "mnist",
        mirrors: &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        files: &[
            Entry {
                name: "train-images-idx3-ubyte.gz",
                size: 9_912_422,
                sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            },
            Entry {
                name: "train-labels-idx1-ubyte.gz",
                size: 28_881,
                sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            },
            Entry {
                name: "t10k-images-idx3-ubyte.gz",
                size: 1_648_877,
                sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            },
            Entry {
                name: "t10k-labels-idx1-ubyte.gz",
                size: 4_542,
                sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            },
        ],
    },
    Source {
        dataset: "fashion-mnist",
        mirrors: &[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        files: &[
            Entry {
                name: "train-images-idx3-ubyte.gz",
                size: 26_421_880,
                sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            },
            Entry {
                name: "train-labels-idx1-ubyte.gz",
                size: 29_515,
                sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            },
            Entry {
                name: "t10k-images-idx3-ubyte.gz",
                size: 4_422_102,
                sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            },
            Entry {
                name: "t10k-labels-idx1-ubyte.gz",
                size: 5_148,
                sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
        ],
    },
    Source {
        dataset: "kmnist",
        mirrors: &[
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ],
        files: &[
            Entry {
                name: "train-images-idx3-ubyte.gz",
                size: 18_165_135,
                sha256: "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            },
            Entry {
                name: "train-labels-idx1-ubyte.gz",
                size: 29_497,
                sha256: "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            },
            Entry {
                name: "t10k-images-idx3-ubyte.gz",
                size: 3_041_136,
                sha256: "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            },
            Entry {
                name: "t10k-labels-idx1-ubyte.gz",
                size: 5_120,
                sha256: "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
            },
        ],
    },
    Source {
        dataset: "cifar10",
        mirrors: &["https://www.cs.toronto.edu/~kriz/"],
        files: &[Entry {
            name: "cifar-10-binary.tar.gz",
            size: 170_052_171,
            sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        }],
    },
];

/// Names of the data sets [`download`] knows, in the order of the table.
pub fn datasets() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|s| s.dataset)
}

/// One file to fetch: where to put it, what it must hash to, where from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// File name inside the target folder; a plain name, no separators.
    pub name: String,
    /// Expected SHA-256, 64 hex digits.
    pub sha256: String,
    /// Expected size in bytes, when known; a server announcing another
    /// length is skipped without reading the body.
    pub size: Option<u64>,
    /// Addresses to try, in order.
    pub urls: Vec<String>,
}

/// The files of a known data set, with their URLs from the table.
pub fn files(dataset: &str) -> Result<Vec<FileSpec>> {
    let source = SOURCES
        .iter()
        .find(|s| s.dataset == dataset)
        .ok_or_else(|| Error::Invalid {
            op: "download",
            msg: format!(
                "unknown data set {dataset:?}; known: {}",
                datasets().collect::<Vec<_>>().join(", ")
            ),
        })?;
    Ok(source
        .files
        .iter()
        .map(|e| FileSpec {
            name: e.name.to_string(),
            sha256: e.sha256.to_string(),
            size: Some(e.size),
            urls: source
                .mirrors
                .iter()
                .map(|m| format!("{m}{}", e.name))
                .collect(),
        })
        .collect())
}

/// How [`download`] fetches.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Show a progress bar on stderr (hidden anyway when stderr is not a
    /// terminal).
    pub progress: bool,
    /// Limit for connecting, for the response headers, and for each read
    /// of the body (a stalled transfer fails after this long).
    pub timeout: Duration,
    /// Tries per URL for failures that may pass (connection refused or
    /// reset, 5xx, a transfer cut short); at least one.
    pub attempts: u32,
    /// Pause before the second try of a URL; doubled for each further try.
    pub backoff: Duration,
    /// Base addresses (ending in `/`) to use instead of the table's, e.g. a
    /// local mirror; empty means the table's. Checksums still apply.
    pub mirrors: Vec<String>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            progress: true,
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_secs(1),
            mirrors: Vec::new(),
        }
    }
}

/// Fetches every file of `dataset` (see [`datasets`]) into `dir`, creating
/// it if needed, and returns the files' paths in table order.
///
/// Files already present with the right SHA-256 are not fetched again.
pub fn download(dataset: &str, dir: &Path, opts: &DownloadOptions) -> Result<Vec<PathBuf>> {
    let mut specs = files(dataset)?;
    if !opts.mirrors.is_empty() {
        for spec in &mut specs {
            spec.urls = opts
                .mirrors
                .iter()
                .map(|m| format!("{m}{}", spec.name))
                .collect();
        }
    }
    download_files(dataset, &specs, dir, opts)
}

/// Fetches explicit files into `dir`; [`download`] with a table of your
/// own. `label` prefixes file names in messages (`label/name`).
///
/// Stops at the first file that cannot be fetched.
pub fn download_files(
    label: &str,
    specs: &[FileSpec],
    dir: &Path,
    opts: &DownloadOptions,
) -> Result<Vec<PathBuf>> {
    for spec in specs {
        check_spec(spec)?;
    }
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let agent = agent(opts);
    specs
        .iter()
        .map(|spec| fetch_file(&agent, label, spec, dir, opts))
        .collect()
}

/// Checks that the file at `path` has the SHA-256 `expected` (hex).
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let found = sha256_file(path)?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            found,
        })
    }
}

/// SHA-256 of a file, as 64 lowercase hex digits.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn check_spec(spec: &FileSpec) -> Result<()> {
    let bad = |msg: String| {
        Err(Error::Invalid {
            op: "download",
            msg,
        })
    };
    let name = &spec.name;
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || Path::new(name).is_absolute()
    {
        return bad(format!("{name:?} is not a plain file name"));
    }
    if spec.sha256.len() != 64 || !spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(format!(
            "{name}: SHA-256 {:?} is not 64 hex digits",
            spec.sha256
        ));
    }
    if spec.urls.is_empty() {
        return bad(format!("{name}: no URL to fetch it from"));
    }
    Ok(())
}

fn agent(opts: &DownloadOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        // The files are gzip archives themselves: ask for them as they are,
        // so the bytes we hash are the bytes the checksum was taken of.
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        .user_agent(concat!("deepgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Why one try at one URL failed.
struct Failure {
    msg: String,
    /// Worth trying the same URL again.
    retry: bool,
    /// We never got an answer from the host.
    unreachable: bool,
}

impl Failure {
    fn new(msg: impl Into<String>, retry: bool) -> Self {
        Self {
            msg: msg.into(),
            retry,
            unreachable: false,
        }
    }
}

fn fetch_file(
    agent: &ureq::Agent,
    label: &str,
    spec: &FileSpec,
    dir: &Path,
    opts: &DownloadOptions,
) -> Result<PathBuf> {
    let dest = dir.join(&spec.name);
    let expected = spec.sha256.to_ascii_lowercase();
    if dest.exists() && sha256_file(&dest)? == expected {
        return Ok(dest);
    }
    let file = format!("{label}/{}", spec.name);
    let part = dir.join(format!(".{}.{}.part", spec.name, std::process::id()));
    let mut attempts = Vec::with_capacity(spec.urls.len());
    let mut all_unreachable = true;
    for url in &spec.urls {
        let mut pause = opts.backoff;
        let mut tries = 0;
        let failure = loop {
            tries += 1;
            let failure = match fetch_once(agent, url, spec, &expected, &part, &file, opts)? {
                None => {
                    fs::rename(&part, &dest).map_err(|source| {
                        let _ = fs::remove_file(&part);
                        Error::Io {
                            path: dest.clone(),
                            source,
                        }
                    })?;
                    return Ok(dest);
                }
                Some(f) => f,
            };
            if !failure.retry || tries >= opts.attempts.max(1) {
                break failure;
            }
            thread::sleep(pause);
            pause *= 2;
        };
        all_unreachable &= failure.unreachable;
        let tries = if tries > 1 {
            format!(" ({tries} tries)")
        } else {
            String::new()
        };
        attempts.push(format!("{url}: {}{tries}", failure.msg));
    }
    Err(if all_unreachable {
        Error::Unreachable { file, attempts }
    } else {
        Error::Download { file, attempts }
    })
}

/// Deletes the temporary file unless the download got through.
struct PartGuard<'a>(&'a Path, bool);

impl Drop for PartGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = fs::remove_file(self.0);
        }
    }
}

/// One try: `Ok(None)` when `part` now holds the verified file,
/// `Ok(Some(_))` when this source failed, `Err` when we cannot write here.
fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    spec: &FileSpec,
    expected: &str,
    part: &Path,
    file: &str,
    opts: &DownloadOptions,
) -> Result<Option<Failure>> {
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(e) => return Ok(Some(call_failure(e))),
    };
    let announced = response.body().content_length();
    if let (Some(want), Some(got)) = (spec.size, announced) {
        if want != got {
            return Ok(Some(Failure::new(
                format!("server announces {got} bytes, expected {want}"),
                false,
            )));
        }
    }
    let total = announced.or(spec.size);
    let mut body = response.into_body().into_reader();

    let io_err = |source| Error::Io {
        path: part.to_path_buf(),
        source,
    };
    // The guard outlives `out`, so the file is closed before it is deleted.
    let mut guard = PartGuard(part, false);
    let mut out = File::create(part).map_err(io_err)?;
    let bar = progress_bar(file, total, opts.progress);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got: u64 = 0;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Ok(Some(Failure::new(
                    format!("transfer cut short after {got}{of} bytes: {e}"),
                    true,
                )));
            }
        };
        got += n as u64;
        if let Some(t) = total.filter(|&t| got > t) {
            bar.abandon();
            return Ok(Some(Failure::new(
                format!("server sent more than the {t} bytes expected"),
                false,
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err)?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let Some(t) = total.filter(|&t| got != t) {
        return Ok(Some(Failure::new(
            format!("transfer cut short after {got} of {t} bytes"),
            true,
        )));
    }
    let found = format!("{:x}", hasher.finalize());
    if found != expected {
        return Ok(Some(Failure::new(
            format!("SHA-256 is {found}, expected {expected}"),
            false,
        )));
    }
    out.sync_all().map_err(io_err)?;
    drop(out);
    guard.1 = true;
    Ok(None)
}

/// Sorts a failed request into: unreachable, worth retrying, or final.
fn call_failure(e: ureq::Error) -> Failure {
    use ureq::Error as E;
    let (retry, unreachable) = match &e {
        E::StatusCode(s) => (*s >= 500 || *s == 408 || *s == 429, false),
        // No name resolution usually means no network: retrying won't help.
        E::HostNotFound => (false, true),
        E::ConnectionFailed => (true, true),
        E::Timeout(t) => (
            true,
            matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ),
        E::Io(io) => {
            use io::ErrorKind as K;
            let unreachable = matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::NetworkUnreachable
                    | K::HostUnreachable
                    | K::NetworkDown
                    | K::AddrNotAvailable
                    | K::TimedOut
            );
            (true, unreachable)
        }
        E::Protocol(_) | E::BodyStalled => (true, false),
        _ => (false, false),
    };
    let msg = match e {
        E::StatusCode(s) => format!("HTTP status {s}"),
        E::Io(io) => io.to_string(),
        e => e.to_string(),
    };
    Failure {
        msg,
        retry,
        unreachable,
    }
}

fn progress_bar(file: &str, total: Option<u64>, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(file.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_data_set_with_well_formed_entries() {
        assert_eq!(
            datasets().collect::<Vec<_>>(),
            ["mnist", "fashion-mnist", "kmnist", "cifar10"]
        );
        for name in datasets() {
            let specs = files(name).unwrap();
            assert!(!specs.is_empty());
            for spec in &specs {
                check_spec(spec).unwrap();
                assert_eq!(spec.sha256, spec.sha256.to_ascii_lowercase());
                assert!(spec.size.unwrap() > 0);
                for url in &spec.urls {
                    assert!(url.starts_with("http://") || url.starts_with("https://"));
                    assert!(url.ends_with(&format!("/{}", spec.name)), "{url}");
                }
            }
        }
        assert_eq!(files("mnist").unwrap().len(), 4);
        assert_eq!(files("cifar10").unwrap().len(), 1);
    }

    #[test]
    fn no_two_files_share_a_checksum() {
        let mut all: Vec<String> = datasets()
            .flat_map(|d| files(d).unwrap())
            .map(|s| s.sha256)
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn unknown_data_set_is_an_error_naming_the_known_ones() {
        let err = files("imagenet").unwrap_err().to_string();
        assert!(
            err.contains("imagenet") && err.contains("fashion-mnist"),
            "{err}"
        );
    }

    #[test]
    fn file_names_with_separators_are_refused() {
        let spec = FileSpec {
            name: "../evil".into(),
            sha256: "0".repeat(64),
            size: None,
            urls: vec!["http://127.0.0.1:9/x".into()],
        };
        assert!(check_spec(&spec).is_err());
        let spec = FileSpec {
            name: "ok.bin".into(),
            sha256: "abc".into(),
            ..spec
        };
        assert!(check_spec(&spec).is_err());
    }
}
