//! Downloads against a tiny HTTP/1.1 server on the loopback interface: no
//! network needed. Each server thread answers a bounded number of requests
//! (or gives up after a few seconds) and exits.
#![cfg(feature = "download")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use deepgen_data::download::{download, download_files, verify, DownloadOptions, FileSpec};
use deepgen_data::Error;
use sha2::{Digest, Sha256};

/// What the server answers for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body and its true length.
    Ok(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// 200 announcing `claimed` bytes, sending only `body`, then closing.
    Short { claimed: usize, body: Vec<u8> },
}

struct Server {
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Paths requested so far, in order.
    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Serves `routes` (path -> reply; anything else is a 404) for at most
/// `max_requests` connections.
fn serve(routes: &[(&str, Reply)], max_requests: usize) -> Server {
    let routes: HashMap<String, Reply> = routes
        .iter()
        .map(|(p, r)| (p.to_string(), r.clone()))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    answer(stream, &routes, &log2);
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Server { base, log }
}

fn answer(stream: TcpStream, routes: &HashMap<String, Reply>, log: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(path.clone());
    let reply = routes.get(&path).cloned().unwrap_or(Reply::Status(404));
    let (status, claimed, body) = match reply {
        Reply::Ok(b) => (200, b.len(), b),
        Reply::Status(s) => (s, 0, Vec::new()),
        Reply::Short { claimed, body } => (200, claimed, body),
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {claimed}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    // Dropping the stream closes it: a short body ends here.
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn fixture() -> Vec<u8> {
    (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn spec(name: &str, body: &[u8], urls: Vec<String>) -> FileSpec {
    FileSpec {
        name: name.into(),
        sha256: sha256(body),
        size: None,
        urls,
    }
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        progress: false,
        timeout: Duration::from_millis(500),
        attempts: 2,
        backoff: Duration::ZERO,
        mirrors: Vec::new(),
    }
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A loopback address with nothing listening.
fn refused_url(path: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}{path}")
}

/// A fresh, not yet created folder under the system's temp dir, removed on
/// drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "deepgen-download-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&path);
    TempDir(path)
}

#[test]
fn download_writes_the_verified_file_and_leaves_no_temporary() {
    let body = fixture();
    let server = serve(&[("/d/file.bin", Reply::Ok(body.clone()))], 1);
    let dir = tempdir();
    let target = dir.path().join("nested");
    let files = [spec(
        "file.bin",
        &body,
        vec![format!("{}/d/file.bin", server.base)],
    )];

    let paths = download_files("test", &files, &target, &opts()).unwrap();

    assert_eq!(paths, [target.join("file.bin")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), body);
    assert_eq!(listing(&target), ["file.bin"]);
    assert_eq!(server.requests(), ["/d/file.bin"]);
}

#[test]
fn a_404_moves_on_to_the_next_mirror_without_retrying() {
    let body = fixture();
    let server = serve(
        &[
            ("/a/file.bin", Reply::Status(404)),
            ("/b/file.bin", Reply::Ok(body.clone())),
        ],
        2,
    );
    let dir = tempdir();
    let files = [spec(
        "file.bin",
        &body,
        vec![
            format!("{}/a/file.bin", server.base),
            format!("{}/b/file.bin", server.base),
        ],
    )];

    let paths = download_files("test", &files, dir.path(), &opts()).unwrap();

    assert_eq!(std::fs::read(&paths[0]).unwrap(), body);
    assert_eq!(listing(dir.path()), ["file.bin"]);
    assert_eq!(server.requests(), ["/a/file.bin", "/b/file.bin"]);
}

#[test]
fn checksum_mismatch_everywhere_is_an_error_and_leaves_nothing() {
    let body = fixture();
    let mut wrong = body.clone();
    wrong[100] ^= 1;
    let server = serve(
        &[
            ("/a/file.bin", Reply::Ok(wrong.clone())),
            ("/b/file.bin", Reply::Ok(wrong)),
        ],
        2,
    );
    let dir = tempdir();
    let urls = vec![
        format!("{}/a/file.bin", server.base),
        format!("{}/b/file.bin", server.base),
    ];
    let files = [spec("file.bin", &body, urls.clone())];

    let err = download_files("test", &files, dir.path(), &opts()).unwrap_err();

    let Error::Download { file, attempts } = &err else {
        panic!("expected Error::Download, got {err}");
    };
    assert_eq!(file, "test/file.bin");
    assert_eq!(attempts.len(), 2);
    for (attempt, url) in attempts.iter().zip(&urls) {
        assert!(attempt.starts_with(url.as_str()), "{attempt}");
        assert!(attempt.contains("SHA-256"), "{attempt}");
    }
    let msg = err.to_string();
    assert!(
        msg.contains("test/file.bin") && msg.contains(&sha256(&body)),
        "{msg}"
    );
    assert!(!dir.path().join("file.bin").exists());
    assert_eq!(listing(dir.path()), Vec::<String>::new());
    // A wrong checksum is not retried at the same address.
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn transfer_cut_short_is_retried_then_falls_through_to_the_next_mirror() {
    let body = fixture();
    let server = serve(
        &[
            (
                "/a/file.bin",
                Reply::Short {
                    claimed: body.len(),
                    body: body[..1000].to_vec(),
                },
            ),
            ("/b/file.bin", Reply::Ok(body.clone())),
        ],
        3,
    );
    let dir = tempdir();
    let files = [spec(
        "file.bin",
        &body,
        vec![
            format!("{}/a/file.bin", server.base),
            format!("{}/b/file.bin", server.base),
        ],
    )];

    let paths = download_files("test", &files, dir.path(), &opts()).unwrap();

    assert_eq!(std::fs::read(&paths[0]).unwrap(), body);
    assert_eq!(listing(dir.path()), ["file.bin"]);
    assert_eq!(
        server.requests(),
        ["/a/file.bin", "/a/file.bin", "/b/file.bin"]
    );
}

#[test]
fn transfer_cut_short_everywhere_leaves_nothing_at_the_final_path() {
    let body = fixture();
    let short = Reply::Short {
        claimed: body.len(),
        body: body[..1000].to_vec(),
    };
    let server = serve(&[("/a/file.bin", short)], 2);
    let dir = tempdir();
    let files = [spec(
        "file.bin",
        &body,
        vec![format!("{}/a/file.bin", server.base)],
    )];

    let err = download_files("test", &files, dir.path(), &opts()).unwrap_err();

    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(
        msg.contains("test/file.bin") && msg.contains("cut short"),
        "{msg}"
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn announced_length_other_than_the_known_size_is_refused_unread() {
    let body = fixture();
    let server = serve(&[("/a/file.bin", Reply::Ok(body.clone()))], 1);
    let dir = tempdir();
    let mut file = spec(
        "file.bin",
        &body,
        vec![format!("{}/a/file.bin", server.base)],
    );
    file.size = Some(body.len() as u64 + 1);

    let err = download_files("test", &[file], dir.path(), &opts()).unwrap_err();

    assert!(err.to_string().contains("announces"), "{err}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn nothing_listening_gives_a_one_line_offline_error() {
    let body = fixture();
    let dir = tempdir();
    let files = [spec(
        "file.bin",
        &body,
        vec![refused_url("/a/file.bin"), refused_url("/b/file.bin")],
    )];

    let start = Instant::now();
    let err = download_files("mnist", &files, dir.path(), &opts()).unwrap_err();

    assert!(start.elapsed() < Duration::from_secs(1));
    let msg = err.to_string();
    assert!(matches!(err, Error::Unreachable { .. }), "{msg}");
    assert!(
        msg.starts_with("could not reach any mirror for mnist/file.bin: "),
        "{msg}"
    );
    assert!(msg.ends_with("(are you offline?)"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn file_already_present_with_the_right_checksum_is_not_fetched_again() {
    let body = fixture();
    let server = serve(&[], 1);
    let dir = tempdir();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("file.bin"), &body).unwrap();
    let files = [spec(
        "file.bin",
        &body,
        vec![format!("{}/a/file.bin", server.base)],
    )];

    let paths = download_files("test", &files, dir.path(), &opts()).unwrap();

    assert_eq!(paths, [dir.path().join("file.bin")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), body);
    assert!(server.requests().is_empty());
}

#[test]
fn file_present_with_a_wrong_checksum_is_replaced() {
    let body = fixture();
    let server = serve(&[("/a/file.bin", Reply::Ok(body.clone()))], 1);
    let dir = tempdir();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("file.bin"), b"stale").unwrap();
    let files = [spec(
        "file.bin",
        &body,
        vec![format!("{}/a/file.bin", server.base)],
    )];

    download_files("test", &files, dir.path(), &opts()).unwrap();

    assert_eq!(std::fs::read(dir.path().join("file.bin")).unwrap(), body);
    assert_eq!(listing(dir.path()), ["file.bin"]);
}

#[test]
fn mirrors_option_replaces_the_table_addresses() {
    // Nothing listens on the mirror, so the error lists exactly its URLs.
    let base = refused_url("/");
    let dir = tempdir();
    let o = DownloadOptions {
        mirrors: vec![base.clone()],
        ..opts()
    };

    let err = download("mnist", dir.path(), &o).unwrap_err();

    let Error::Unreachable { file, attempts } = &err else {
        panic!("expected Error::Unreachable, got {err}");
    };
    assert_eq!(file, "mnist/train-images-idx3-ubyte.gz");
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].starts_with(&format!("{base}train-images-idx3-ubyte.gz")),
        "{}",
        attempts[0]
    );
}

#[test]
fn unknown_data_set_is_refused() {
    let dir = tempdir();
    let err = download("not-a-set", dir.path(), &opts()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(!dir.path().exists());
}

#[test]
fn verify_names_the_file_and_both_checksums() {
    let body = fixture();
    let dir = tempdir();
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("file.bin");
    std::fs::write(&path, &body).unwrap();

    verify(&path, &sha256(&body).to_uppercase()).unwrap();
    let err = verify(&path, &sha256(b"other")).unwrap_err();

    let msg = err.to_string();
    assert!(matches!(err, Error::Checksum { .. }), "{msg}");
    assert!(msg.contains("file.bin"), "{msg}");
    assert!(
        msg.contains(&sha256(&body)) && msg.contains(&sha256(b"other")),
        "{msg}"
    );
}
