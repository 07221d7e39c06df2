//! The run directory: where a run's config, metrics, pictures, event files
//! and checkpoints go, and which process writes them.
//!
//! Every file is written atomically (temp file + rename, through
//! `deepgen_tensor::io::write_atomic`), so a crash never leaves half a file.
//! A run directory belongs to one run: starting a new run where one already
//! is needs `force` (which clears the run's own files), continuing one
//! needs `resume`. Only the process that [`RunDir::is_writer`] writes; the
//! others (further ranks of a data-parallel run) do the same work quietly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::io;
use crate::{Error, Result};

/// The file holding the run's settings.
pub const CONFIG_FILE: &str = "config.json";

/// The lock file of a run directory: the writing process's PID.
pub const LOCK_FILE: &str = ".lock";

/// Names the runtime writes at the top of a run directory; `force` removes
/// exactly these (and nothing a user put beside them).
const RUN_FILES: [&str; 4] = [CONFIG_FILE, "metrics.csv", "checkpoints", "tb"];

/// A run directory and whether this process writes it.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    writer: bool,
}

/// How a run starts in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// A new run; the directory must be empty or absent.
    #[default]
    New,
    /// A new run over an old one: the old run's files are removed first.
    Force,
    /// Continue the run in the directory from its last checkpoint.
    Resume,
}

impl RunDir {
    /// The run directory at `path`; `writer` is false for processes that
    /// must not write (all but one in a data-parallel run).
    pub fn new(path: impl Into<PathBuf>, writer: bool) -> Self {
        RunDir {
            path: path.into(),
            writer,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process writes the run directory.
    pub fn is_writer(&self) -> bool {
        self.writer
    }

    /// A path inside the run directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Makes the directory ready for a run that starts as `start`: a new
    /// run refuses a directory that holds anything (naming `--resume` and
    /// `--force`), `Force` removes the old run's files, `Resume` needs the
    /// directory to hold a run.
    pub fn prepare(&self, start: Start) -> Result<()> {
        let entries: Vec<String> = match std::fs::read_dir(&self.path) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != LOCK_FILE)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&self.path)(e)),
        };
        match start {
            Start::New if !entries.is_empty() => {
                return Err(Error::Invalid {
                    op: "run directory",
                    msg: format!(
                        "{} is not empty (it holds {}); pass --resume to continue the run there, --force to start over, or choose another --out",
                        self.path.display(),
                        summary(&entries)
                    ),
                });
            }
            Start::Resume if !entries.iter().any(|e| e == CONFIG_FILE) => {
                return Err(Error::Invalid {
                    op: "resume",
                    msg: format!(
                        "{} holds no run to resume (no {CONFIG_FILE})",
                        self.path.display()
                    ),
                });
            }
            Start::Force if self.writer => {
                // The module files linked at the top from the last checkpoint
                // go too: a forced run that fails must not leave the old
                // model where `sample` and `eval` look.
                for file in self.linked_module_files() {
                    let p = self.path.join(file);
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
                for name in RUN_FILES.iter().filter(|n| entries.iter().any(|e| e == *n)) {
                    let p = self.path.join(name);
                    let removed = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    removed.map_err(io(&p))?;
                }
            }
            _ => {}
        }
        if self.writer {
            std::fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        }
        Ok(())
    }

    /// The files at the top that are links of the last checkpoint's module
    /// files (same name, same file).
    fn linked_module_files(&self) -> Vec<std::ffi::OsString> {
        let Ok(Some(dir)) = crate::checkpoint::checkpoint_dir(self, "last") else {
            return Vec::new();
        };
        let same = |a: &Path, b: &Path| match (std::fs::read(a), std::fs::read(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| same(&dir.join(n), &self.path.join(n)))
            .collect()
    }

    /// Takes the run directory for this process (None when it is not the
    /// writer): a lock file holding the PID, so that a second run on the
    /// same directory stops with a message naming the first. A lock whose
    /// process is gone (a crash, kill -9) is taken over, and the temporary
    /// files that process left are removed. The lock goes when the guard drops.
    pub fn lock(&self) -> Result<Option<RunLock>> {
        if !self.writer {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let path = self.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    write!(f, "{}", std::process::id()).map_err(io(&path))?;
                    self.remove_stray_temporaries()?;
                    return Ok(Some(RunLock { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid != std::process::id() && alive(pid) => {
                            return Err(Error::Invalid {
                                op: "run directory",
                                msg: format!(
                                    "{} is in use by process {pid} (another run writes there); wait for it to end or choose another --out",
                                    self.path.display()
                                ),
                            })
                        }
                        // Its process is gone (or it is unreadable): stale.
                        _ => std::fs::remove_file(&path).map_err(io(&path))?,
                    }
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(Error::Invalid {
            op: "run directory",
            msg: format!("{}: could not take {LOCK_FILE}", self.path.display()),
        })
    }

    /// Temporary files and folders of writes that never finished (only the
    /// lock's holder writes here, so none of them is in use).
    fn remove_stray_temporaries(&self) -> Result<()> {
        let stray = |name: &str| {
            name.starts_with('.') && (name.contains(".tmp-") || name.contains(".link-"))
        };
        for dir in [self.path.clone(), self.join(crate::checkpoint::CHECKPOINTS)] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if stray(&name) {
                    let p = entry.path();
                    let removed = match p.is_dir() {
                        true => std::fs::remove_dir_all(&p),
                        false => std::fs::remove_file(&p),
                    };
                    removed.map_err(io(&p))?;
                }
            }
        }
        Ok(())
    }

    /// Writes `bytes` to `name` in the run directory, atomically; nothing
    /// when this process is not the writer.
    pub fn write(&self, name: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
        if !self.writer {
            return Ok(());
        }
        write_file(&self.join(name), bytes)
    }

    /// Writes `value` as pretty JSON to `name`.
    pub fn write_json(&self, name: &str, value: &Value) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value).expect("JSON values serialise");
        text.push('\n');
        self.write(name, text.as_bytes())
    }

    /// Reads the JSON file `name`, if it exists.
    pub fn read_json(&self, name: &str) -> Result<Option<Value>> {
        let path = self.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path,
                    reason: format!("not valid JSON: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// The lock on a run directory; dropping it releases the directory.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists. Where that cannot be told (no /proc), a
/// lock is taken as held: better a message than two writers.
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.exists() {
        return true;
    }
    // A zombie (state Z: ended, not yet reaped, e.g. a rank mpirun just
    // killed) holds nothing.
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Writes a file atomically, creating its folder (for outputs outside a
/// run directory: samples, latents).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    deepgen_tensor::io::write_atomic(path, bytes).map_err(io(path))
}

/// A few of a directory's entries, for a message.
fn summary(entries: &[String]) -> String {
    let mut names: Vec<&str> = entries.iter().map(String::as_str).collect();
    names.sort_unstable();
    let shown: Vec<&str> = names.iter().take(4).copied().collect();
    match names.len() - shown.len() {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The leaves of a JSON object by dotted key (`training.lr`), for comparing
/// two configs key by key.
pub fn flatten_json(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// The keys whose values differ between a run's recorded config and the
/// config it is resumed with, as "key: recorded -> now", leaving out keys
/// in `allowed` (which may change on resume, e.g. `epochs`) and their
/// children.
pub fn config_differences(recorded: &Value, now: &Value, allowed: &[&str]) -> Vec<String> {
    let (old, new) = (flatten_json(recorded), flatten_json(now));
    let free = |key: &str| {
        allowed.iter().any(|a| {
            key == *a
                || key.ends_with(&format!(".{a}"))
                || key.starts_with(&format!("{a}."))
                || key.contains(&format!(".{a}."))
        })
    };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| !free(k))
        .filter_map(|k| {
            let (a, b) = (old.get(k), new.get(k));
            (a != b).then(|| {
                let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
                format!("{k}: {} -> {}", show(a), show(b))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("deepgen-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_run_refuses_a_directory_in_use_and_force_clears_only_run_files() {
        let dir = temp("force");
        let run = RunDir::new(&dir, true);
        run.prepare(Start::New).unwrap();
        run.write_json(CONFIG_FILE, &json!({"a": 1})).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = run.prepare(Start::New).unwrap_err().to_string();
        assert!(err.contains("--resume") && err.contains("--force"), "{err}");
        assert!(err.contains("config.json"), "{err}");
        run.prepare(Start::Force).unwrap();
        assert!(!dir.join(CONFIG_FILE).exists());
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_writer_is_refused_and_a_stale_lock_taken_over() {
        let dir = temp("lock");
        let run = RunDir::new(&dir, true);
        let held = run.lock().unwrap().unwrap();
        // This process holds it; another process's live lock is simulated
        // by PID 1, which always exists.
        drop(held);
        std::fs::write(dir.join(LOCK_FILE), "1").unwrap();
        let err = run.lock().unwrap_err().to_string();
        assert!(err.contains("in use by process 1"), "{err}");
        // A lock of a process that is gone, and its half-written files.
        std::fs::write(dir.join(LOCK_FILE), "999999999").unwrap();
        std::fs::write(dir.join(".model.safetensors.tmp-999999999"), "half").unwrap();
        std::fs::create_dir_all(dir.join("checkpoints/.tmp-epoch-0003-999999999")).unwrap();
        let lock = run.lock().unwrap().unwrap();
        assert!(!dir.join(".model.safetensors.tmp-999999999").exists());
        assert!(!dir.join("checkpoints/.tmp-epoch-0003-999999999").exists());
        // The lock is not an entry that makes the folder "in use" for a new run.
        std::fs::remove_dir_all(dir.join("checkpoints")).unwrap();
        run.prepare(Start::New).unwrap();
        drop(lock);
        assert!(!dir.join(LOCK_FILE).exists());
        assert!(RunDir::new(&dir, false).lock().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_needs_a_run_and_readers_write_nothing() {
        let dir = temp("resume");
        let quiet = RunDir::new(&dir, false);
        quiet.prepare(Start::New).unwrap();
        quiet.write("x.txt", b"no").unwrap();
        assert!(!dir.exists());
        let run = RunDir::new(&dir, true);
        let err = run.prepare(Start::Resume).unwrap_err().to_string();
        assert!(err.contains("no run to resume"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_differences_name_each_changed_key_but_the_allowed_ones() {
        let old =
            json!({"training": {"lr": 0.001, "epochs": 10, "seed": 0}, "model": {"latent": 20}});
        let new = json!({"training": {"lr": 0.01, "epochs": 20, "seed": 0}, "model": {"latent": 20, "hidden": 5}});
        let diff = config_differences(&old, &new, &["epochs"]);
        assert_eq!(
            diff,
            vec![
                "model.hidden: (absent) -> 5".to_string(),
                "training.lr: 0.001 -> 0.01".to_string()
            ]
        );
    }
}
