//! The checkpoint bundle: any set of named modules, the updaters
//! (optimizer, schedule, accumulation), random generators and the run's
//! progress, saved whole or not at all, and restored exactly.
//!
//! A checkpoint is a directory `checkpoints/epoch-NNNN/` holding one
//! safetensors file per module (PyTorch's names; the file loads into the
//! same PyTorch module), one per updater and `trainer.safetensors`
//! (epochs done, the generators' positions, the run's counters). It is
//! written under a temporary name, synced, and renamed into place; only
//! then does the pointer file `checkpoints/last` (written atomically) name
//! it. `--resume` reads the directory the pointer names, so it only ever
//! sees a complete checkpoint, and a crash at any moment leaves the
//! previous one in force. `checkpoints/best` names the best checkpoint by
//! the run's monitored metric. The module files of the last checkpoint are
//! also linked at the top of the run directory (`model.safetensors`), where
//! `sample`, `eval` and PyTorch users look for them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use deepgen_nn::checkpoint::{self, Loaded, TensorData};
use deepgen_nn::Module;
use rand_chacha::ChaCha8Rng;

use crate::error::io;
use crate::run::RunDir;
use crate::step::Updater;
use crate::{Error, Result};

/// Folder of the checkpoints in a run directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The progress file of a checkpoint.
const TRAINER_FILE: &str = "trainer";

/// One file of a checkpoint: named tensors and string metadata.
type FileContents = (Vec<(String, TensorData)>, HashMap<String, String>);

/// What a checkpoint will hold; filled by a trainer, written by the runtime.
#[derive(Default)]
pub struct Checkpoint {
    /// file stem -> (tensors, metadata)
    files: BTreeMap<String, FileContents>,
    /// Modules, whose files are also linked at the top of the run directory.
    modules: Vec<String>,
    trainer: Vec<(String, TensorData)>,
}

fn i64s(data: Vec<i64>) -> TensorData {
    TensorData::I64 {
        shape: vec![data.len()],
        data,
    }
}

impl Checkpoint {
    pub fn new() -> Self {
        Self::default()
    }

    fn add_file(
        &mut self,
        name: &str,
        entries: Vec<(String, TensorData)>,
        meta: HashMap<String, String>,
    ) -> Result<()> {
        if name == TRAINER_FILE || self.files.contains_key(name) || name.contains(['/', '\\']) {
            return Err(Error::Invalid {
                op: "checkpoint",
                msg: format!("{name:?} is taken or not a plain file name"),
            });
        }
        self.files.insert(name.to_string(), (entries, meta));
        Ok(())
    }

    /// A module's state dict as `NAME.safetensors`, with `metadata` (e.g.
    /// the model's config, so it can be rebuilt from the file alone). A NaN
    /// or infinite parameter or buffer is [`Error::NonFiniteWeights`]: a
    /// diverged model is never saved as the last good one.
    pub fn module(
        &mut self,
        name: &str,
        module: &dyn Module<f32>,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        if let Some((tensor, value)) = checkpoint::first_non_finite(module) {
            return Err(Error::NonFiniteWeights {
                module: name.to_string(),
                tensor,
                value,
            });
        }
        let state = checkpoint::state_dict(module);
        let mut meta = metadata;
        meta.insert("format".into(), "pt".into());
        self.add_file(name, state, meta)?;
        self.modules.push(name.to_string());
        Ok(())
    }

    /// Adds `extra` to the metadata of every module file.
    pub fn add_metadata(&mut self, extra: &std::collections::BTreeMap<String, String>) {
        for stem in &self.modules {
            if let Some((_, meta)) = self.files.get_mut(stem) {
                meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }

    /// An updater's optimizer, schedule and counters as
    /// `optimizer_NAME.safetensors` (the name it was made with).
    pub fn updater(&mut self, updater: &Updater) -> Result<()> {
        let entries = updater
            .state_dict()
            .into_iter()
            .map(|(k, v)| (k, TensorData::F64(v)))
            .collect();
        self.add_file(&optimizer_file(updater), entries, HashMap::new())
    }

    /// A generator's seed, stream and position, so a resumed run draws the
    /// numbers an uninterrupted one would.
    pub fn rng(&mut self, name: &str, rng: &ChaCha8Rng) {
        let seed = rng.get_seed();
        let seed: Vec<i64> = seed
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let pos = rng.get_word_pos();
        let p = format!("rng.{name}");
        self.trainer.push((format!("{p}.seed"), i64s(seed)));
        self.trainer
            .push((format!("{p}.stream"), i64s(vec![rng.get_stream() as i64])));
        self.trainer.push((
            format!("{p}.word_pos"),
            i64s(vec![(pos >> 64) as i64, pos as u64 as i64]),
        ));
    }

    /// A number of the run's own (a best score, a counter).
    pub fn number(&mut self, name: &str, value: f64) {
        let t = deepgen_autograd::Tensor::from_vec(vec![value], &[1]).expect("one element");
        self.trainer
            .push((format!("number.{name}"), TensorData::F64(t)));
    }

    /// Writes the checkpoint at `at` (whole epochs, or batches into the next
    /// one when a run was interrupted); it becomes `last`, and `best` too
    /// when `best` is true. Older checkpoints that neither pointer names
    /// are removed. Returns the checkpoint's directory.
    pub(crate) fn commit(
        mut self,
        run: &RunDir,
        at: Position,
        global_step: u64,
        best: bool,
    ) -> Result<PathBuf> {
        let name = at.dir_name();
        let root = run.join(CHECKPOINTS);
        if !run.is_writer() {
            return Ok(root.join(name));
        }
        self.seal(at, global_step);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        for (stem, (entries, meta)) in &self.files {
            let bytes = checkpoint::to_bytes(entries, Some(meta.clone()))?;
            let path = tmp.join(format!("{stem}.safetensors"));
            crash_point("checkpoint-file");
            write_synced(&path, &bytes)?;
        }
        sync_dir(&tmp)?;
        crash_point("checkpoint-rename");
        let dir = root.join(&name);
        if dir.exists() {
            // A checkpoint of the same epoch from an earlier attempt that
            // no pointer may name any more once this one is in place.
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        sync_dir(&root)?;
        crash_point("checkpoint-pointer");
        set_pointer(&root, "last", &name)?;
        if best {
            set_pointer(&root, "best", &name)?;
        }
        crash_point("checkpoint-link");
        for stem in &self.modules {
            link_top(run, &dir, stem)?;
        }
        crash_point("checkpoint-prune");
        prune(&root)?;
        Ok(dir)
    }
}

impl Checkpoint {
    /// Adds the progress file: where the run stands.
    fn seal(&mut self, at: Position, global_step: u64) {
        self.trainer
            .push(("epochs_done".into(), i64s(vec![at.epochs_done as i64])));
        self.trainer
            .push(("batches_done".into(), i64s(vec![at.batches_done as i64])));
        self.trainer
            .push(("global_step".into(), i64s(vec![global_step as i64])));
        let trainer = std::mem::take(&mut self.trainer);
        self.files
            .insert(TRAINER_FILE.into(), (trainer, HashMap::new()));
    }

    /// The whole checkpoint as one byte string (each file's safetensors
    /// bytes, framed by name and length): what rank 0 of a data-parallel
    /// run sends the others at the start, [`Restored::from_bytes`] reads.
    pub(crate) fn into_bytes(mut self, at: Position, global_step: u64) -> Result<Vec<u8>> {
        self.seal(at, global_step);
        let mut out = Vec::new();
        for (stem, (entries, meta)) in &self.files {
            let bytes = checkpoint::to_bytes(entries, Some(meta.clone()))?;
            for part in [stem.as_bytes(), &bytes[..]] {
                out.extend((part.len() as u64).to_le_bytes());
                out.extend(part);
            }
        }
        Ok(out)
    }
}

/// Where a checkpoint stands in a run: epochs finished, and batches of the
/// next one (0 at an epoch's end; more when a run was interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epochs_done: usize,
    pub batches_done: usize,
}

impl Position {
    /// `epoch-0003`, or `epoch-0003-batch-000120` inside epoch 4.
    fn dir_name(self) -> String {
        match self.batches_done {
            0 => format!("epoch-{:04}", self.epochs_done),
            b => format!("epoch-{:04}-batch-{b:06}", self.epochs_done),
        }
    }
}

/// The crash test's hook (`cargo xtask crash-test`): with the environment
/// variable `DEEPGEN_CRASH_AT=POINT:K`, the process dies the K-th time it
/// reaches `POINT` — by abort, which like kill -9 runs no destructor and
/// flushes nothing — so that every step of a checkpoint write can be
/// interrupted on purpose. Unset, this is one relaxed atomic load.
pub fn crash_point(point: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("DEEPGEN_CRASH_AT").ok()?;
        let (name, k) = spec.rsplit_once(':')?;
        Some((name.to_string(), k.parse().ok()?))
    });
    if let Some((name, k)) = target {
        if name == point && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k {
            std::process::abort();
        }
    }
}

fn optimizer_file(updater: &Updater) -> String {
    format!("optimizer_{}", updater.name())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    f.write_all(head).map_err(io(path))?;
    crash_point("checkpoint-half-file");
    f.write_all(tail).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the renames inside durable; not possible on every platform.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn set_pointer(root: &Path, pointer: &str, name: &str) -> Result<()> {
    let path = root.join(pointer);
    deepgen_tensor::io::write_atomic(&path, format!("{name}\n").as_bytes()).map_err(io(&path))
}

/// `RUN/STEM.safetensors` becomes the checkpoint's file: a hard link
/// renamed into place (atomic), or an atomic copy where links fail.
fn link_top(run: &RunDir, dir: &Path, stem: &str) -> Result<()> {
    let file = format!("{stem}.safetensors");
    let (src, dst) = (dir.join(&file), run.join(&file));
    let tmp = run.join(format!(".{file}.link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(&src, &tmp).is_ok() {
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        // Renaming a link onto another link of the same file does nothing
        // (POSIX), which leaves the temporary name: a repeated link
        // (`repair` after a crash) must not.
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    let bytes = std::fs::read(&src).map_err(io(&src))?;
    run.write(&file, &bytes)
}

/// Finishes what a crash may have left undone after the `last` pointer
/// moved: the module files at the top of the run directory linked to the
/// last checkpoint's (they may still be the previous one's), superseded
/// checkpoints removed. Module files are the checkpoint's files other than
/// the progress and the updaters' (`optimizer_*`).
pub(crate) fn repair(run: &RunDir) -> Result<()> {
    let Some(dir) = checkpoint_dir(run, "last")? else {
        return Ok(());
    };
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".safetensors") else {
            continue;
        };
        if stem != TRAINER_FILE && !stem.starts_with("optimizer_") {
            link_top(run, &dir, stem)?;
        }
    }
    prune(&run.join(CHECKPOINTS))
}

/// Removes checkpoints no pointer names, and temporary directories of
/// writes that never finished.
fn prune(root: &Path) -> Result<()> {
    let keep: Vec<String> = ["last", "best"]
        .iter()
        .filter_map(|p| read_pointer(root, p).ok().flatten())
        .collect();
    for entry in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_tmp =
            name.starts_with(".tmp-") && !name.ends_with(&format!("-{}", std::process::id()));
        let old = name.starts_with("epoch-") && !keep.contains(&name);
        if stale_tmp || old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn read_pointer(root: &Path, pointer: &str) -> Result<Option<String>> {
    let path = root.join(pointer);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim().to_string();
            if name.starts_with("epoch-") && !name.contains(['/', '\\']) {
                Ok(Some(name))
            } else {
                Err(Error::Corrupt {
                    path,
                    reason: format!("names {name:?}, not a checkpoint"),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The checkpoint directory the pointer `last` (or `best`) names, if any.
pub fn checkpoint_dir(run: &RunDir, pointer: &str) -> Result<Option<PathBuf>> {
    let root = run.join(CHECKPOINTS);
    Ok(read_pointer(&root, pointer)?.map(|n| root.join(n)))
}

/// A checkpoint read back: everything checked before anything is loaded
/// into a module or optimizer.
pub struct Restored {
    dir: PathBuf,
    files: BTreeMap<String, Loaded>,
    /// Epochs the checkpointed run had finished.
    pub epochs_done: usize,
    /// Batches of the next epoch done (an interrupted run's checkpoint).
    pub batches_done: usize,
    /// Optimizer steps of the run's main loop so far (TensorBoard's step).
    pub global_step: u64,
}

impl Restored {
    /// Reads the checkpoint the pointer `last` names.
    pub fn open(run: &RunDir) -> Result<Restored> {
        let Some(dir) = checkpoint_dir(run, "last")? else {
            return Err(Error::Invalid {
                op: "resume",
                msg: format!(
                    "{} has no complete checkpoint to resume from (no {CHECKPOINTS}/last); start over with --force",
                    run.path().display()
                ),
            });
        };
        Self::read(&dir)
    }

    /// Reads a checkpoint directory.
    pub fn read(dir: &Path) -> Result<Restored> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let path = entry.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".safetensors"))
            else {
                continue;
            };
            files.insert(stem.to_string(), checkpoint::load_tensors(&path)?);
        }
        Self::from_files(dir, files)
    }

    /// A checkpoint from files already read (file stem -> contents); `dir`
    /// names them in errors. The progress file is checked here.
    pub fn from_files(dir: &Path, files: BTreeMap<String, Loaded>) -> Result<Restored> {
        let mut r = Restored {
            dir: dir.to_path_buf(),
            files,
            epochs_done: 0,
            batches_done: 0,
            global_step: 0,
        };
        r.epochs_done = r
            .int("epochs_done")?
            .try_into()
            .map_err(|_| r.bad("epochs_done"))?;
        // Absent from checkpoints written before runs could be interrupted.
        if r.has("batches_done") {
            r.batches_done = r
                .int("batches_done")?
                .try_into()
                .map_err(|_| r.bad("batches_done"))?;
        }
        r.global_step = r
            .int("global_step")?
            .try_into()
            .map_err(|_| r.bad("global_step"))?;
        Ok(r)
    }

    /// A checkpoint sent as [`Checkpoint::into_bytes`]; `dir` names it in
    /// errors.
    pub(crate) fn from_bytes(dir: &Path, bytes: &[u8]) -> Result<Restored> {
        let corrupt = || Error::Corrupt {
            path: dir.to_path_buf(),
            reason: "a checkpoint sent between ranks is truncated".into(),
        };
        let mut at = 0usize;
        let mut next = || -> Result<&[u8]> {
            let len = bytes
                .get(at..at + 8)
                .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
                .ok_or_else(corrupt)?;
            let part = bytes.get(at + 8..at + 8 + len).ok_or_else(corrupt)?;
            at += 8 + len;
            Ok(part)
        };
        let mut files = BTreeMap::new();
        loop {
            let stem = match next() {
                Ok(s) if !s.is_empty() => String::from_utf8_lossy(s).into_owned(),
                Ok(_) => return Err(corrupt()),
                Err(_) => break,
            };
            let path = dir.join(format!("{stem}.safetensors"));
            files.insert(stem, checkpoint::from_bytes(&path, next()?)?);
        }
        Self::from_files(dir, files)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.safetensors"))
    }

    fn bad(&self, what: &str) -> Error {
        Error::Corrupt {
            path: self.path(TRAINER_FILE),
            reason: format!("missing or malformed {what}"),
        }
    }

    fn file(&self, stem: &str) -> Result<&Loaded> {
        self.files.get(stem).ok_or_else(|| Error::Corrupt {
            path: self.path(stem),
            reason: "missing from the checkpoint".into(),
        })
    }

    fn trainer_i64s(&self, key: &str) -> Result<Vec<i64>> {
        let (entries, _) = self.file(TRAINER_FILE)?;
        entries
            .iter()
            .find(|(n, _)| n == key)
            .and_then(|(_, t)| match t {
                TensorData::I64 { data, .. } => Some(data.clone()),
                _ => None,
            })
            .ok_or_else(|| self.bad(key))
    }

    fn has(&self, key: &str) -> bool {
        self.file(TRAINER_FILE)
            .is_ok_and(|(entries, _)| entries.iter().any(|(n, _)| n == key))
    }

    fn int(&self, key: &str) -> Result<i64> {
        match self.trainer_i64s(key)?.as_slice() {
            [v] => Ok(*v),
            _ => Err(self.bad(key)),
        }
    }

    /// Loads module `name` (strict: every tensor's name and shape).
    pub fn module(&self, name: &str, module: &dyn Module<f32>) -> Result<()> {
        let (entries, _) = self.file(name)?;
        checkpoint::load_entries(module, &self.path(name), entries.clone(), true)?;
        Ok(())
    }

    /// The metadata of module `name`'s file.
    pub fn metadata(&self, name: &str) -> Result<&HashMap<String, String>> {
        Ok(&self.file(name)?.1)
    }

    /// Loads an updater's state (the file of its name).
    pub fn updater(&self, updater: &mut Updater) -> Result<()> {
        let (entries, _) = self.file(&optimizer_file(updater))?;
        let state: Vec<_> = entries
            .iter()
            .filter_map(|(n, t)| t.to_float::<f64>().map(|t| (n.clone(), t)))
            .collect();
        updater.load_state_dict(&state)
    }

    /// Restores a generator written by [`Checkpoint::rng`].
    pub fn rng(&self, name: &str, rng: &mut ChaCha8Rng) -> Result<()> {
        use rand::SeedableRng;
        let p = format!("rng.{name}");
        let seed = self.trainer_i64s(&format!("{p}.seed"))?;
        let stream = self.trainer_i64s(&format!("{p}.stream"))?;
        let pos = self.trainer_i64s(&format!("{p}.word_pos"))?;
        let (4, 1, 2) = (seed.len(), stream.len(), pos.len()) else {
            return Err(self.bad(&p));
        };
        let mut bytes = [0u8; 32];
        for (chunk, v) in bytes.chunks_exact_mut(8).zip(&seed) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let mut g = ChaCha8Rng::from_seed(bytes);
        g.set_stream(stream[0] as u64);
        g.set_word_pos(((pos[0] as u64 as u128) << 64) | pos[1] as u64 as u128);
        *rng = g;
        Ok(())
    }

    /// A number written by [`Checkpoint::number`].
    pub fn number(&self, name: &str) -> Result<f64> {
        let key = format!("number.{name}");
        let (entries, _) = self.file(TRAINER_FILE)?;
        entries
            .iter()
            .find(|(n, _)| *n == key)
            .and_then(|(_, t)| t.to_float::<f64>())
            .and_then(|t| t.to_vec().first().copied())
            .ok_or_else(|| self.bad(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_nn::Linear;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_committed_checkpoint_restores_modules_generators_and_progress() {
        let dir = std::env::temp_dir().join(format!("deepgen-ckpt-{}", std::process::id()));
        let run = RunDir::new(&dir, true);
        run.prepare(crate::run::Start::Force).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let a = Linear::<f32>::new(3, 2, true, &mut rng).unwrap();
        let _: u64 = rng.random();
        for epoch in 1..=3 {
            let mut c = Checkpoint::new();
            c.module("model", &a, HashMap::new()).unwrap();
            c.rng("noise", &rng);
            c.number("best", 0.5);
            let at = Position {
                epochs_done: epoch,
                batches_done: 0,
            };
            c.commit(&run, at, 10 * epoch as u64, epoch == 2).unwrap();
        }
        let r = Restored::open(&run).unwrap();
        assert_eq!((r.epochs_done, r.global_step), (3, 30));
        let b = Linear::<f32>::new(3, 2, true, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        r.module("model", &b).unwrap();
        assert_eq!(a.weight.value().to_vec(), b.weight.value().to_vec());
        let mut other = ChaCha8Rng::seed_from_u64(99);
        r.rng("noise", &mut other).unwrap();
        assert_eq!(other.random::<u64>(), rng.random::<u64>());
        assert_eq!(r.number("best").unwrap(), 0.5);
        // Only the checkpoints the pointers name are kept.
        let mut kept: Vec<String> = std::fs::read_dir(dir.join(CHECKPOINTS))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["best", "epoch-0002", "epoch-0003", "last"]);
        assert!(dir.join("model.safetensors").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_finite_weights_are_refused_before_anything_is_written() {
        let a = Linear::<f32>::new(2, 2, false, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        a.weight
            .set_value(
                deepgen_autograd::Tensor::from_vec(vec![1.0, f32::INFINITY, 0.0, 0.0], &[2, 2])
                    .unwrap(),
            )
            .unwrap();
        let err = Checkpoint::new()
            .module("generator", &a, HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("generator") && err.contains("`weight`") && err.contains("inf"),
            "{err}"
        );
    }
}
