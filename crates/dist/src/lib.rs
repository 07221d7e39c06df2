//! deepgen-dist: the process group of a data-parallel run.
//!
//! A run of N processes (ranks) trains one model: each rank takes its share
//! of every global batch, and the training runtime (deepgen-train) sums the
//! ranks' gradients with [`Collective::sum_f32`] before every update, so
//! every rank takes the same step. This crate is that group and its
//! collectives, nothing more:
//!
//! - [`world`]: the group this process belongs to — one process unless
//!   [`init`] joined MPI's world (the `mpi` feature, under `mpirun` or
//!   `srun`), as `torch.distributed`'s default process group;
//! - [`all_sum`]: a differentiable sum over the ranks (its gradient is the
//!   sum of the ranks' gradients), which synchronised BatchNorm is built on.
//!
//! Collectives follow MPI's rules: every rank calls the same ones in the
//! same order, and an error in one is fatal to the job (MPI's default error
//! handler aborts it), so they return no `Result`. They must be called from
//! the thread that called [`init`].

mod ops;

#[cfg(feature = "mpi")]
mod mpi_world;

use std::sync::OnceLock;

pub use ops::all_sum;

/// Errors of joining a process group.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Started by an MPI launcher, but built without the `mpi` feature:
    /// each process would train alone and all would write one run.
    #[error("started by an MPI launcher as one of {ranks} processes, but this deepgen was built without MPI; build it with `--features mpi` (docs/distributed.md), or run one process")]
    NotBuilt { ranks: usize },
    #[error("MPI could not be initialised: {0}")]
    Init(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The collectives of a process group.
pub trait Collective: Send + Sync {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `data` by its element-wise sum over the ranks; every rank
    /// gets the same bits.
    fn sum_f32(&self, data: &mut [f32]);
    /// [`Collective::sum_f32`] for f64.
    fn sum_f64(&self, data: &mut [f64]);
    /// Replaces `bytes` on every rank by rank 0's.
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Every rank's `bytes`, in rank order, on every rank.
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>>;
    /// Ends every process of the group with `code` (after a rank-local
    /// error, when the others may be waiting in a collective).
    fn abort(&self, code: i32) -> !;
    /// The engine, for `--version` and logs ("one process", "MPI: ...").
    fn engine(&self) -> String;
}

/// The group of one process: every collective is the identity.
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _data: &mut [f32]) {}
    fn sum_f64(&self, _data: &mut [f64]) {}
    fn broadcast(&self, _bytes: &mut Vec<u8>) {}
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        vec![bytes.to_vec()]
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn engine(&self) -> String {
        "one process".into()
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// The group this process trains in: MPI's world after [`init`] under a
/// launcher, else [`Local`].
pub fn world() -> &'static dyn Collective {
    match WORLD.get() {
        Some(w) => w.as_ref(),
        None => &Local,
    }
}

/// Whether this process is one of several of a data-parallel run.
pub fn distributed() -> bool {
    world().size() > 1
}

/// The number of processes a launcher started, from the variables Open
/// MPI's `mpirun`, MPICH's `mpiexec` (PMI) and Slurm's `srun` set; None
/// when no launcher started this process.
pub fn launched_ranks() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// Processes of this run on this machine (Open MPI's local size; 1 when
/// unknown), to share the machine's cores among them.
pub fn local_ranks() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
    .filter(|&n: &usize| n > 0)
    .unwrap_or(1)
}

/// While alive, the process is in its group; dropping it leaves MPI
/// (`MPI_Finalize`). Keep it until the program's work is done.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// Joins MPI's world when a launcher started this process (with the `mpi`
/// feature), so [`world`] is that group; otherwise the process is alone.
/// Call once, from the thread that will run the collectives.
pub fn init() -> Result<Session> {
    let launched = launched_ranks();
    #[cfg(feature = "mpi")]
    {
        if launched.is_some() {
            let universe = mpi_world::join()?;
            return Ok(Session {
                _universe: Some(universe),
            });
        }
        Ok(Session { _universe: None })
    }
    #[cfg(not(feature = "mpi"))]
    match launched {
        Some(ranks) if ranks > 1 => Err(Error::NotBuilt { ranks }),
        _ => Ok(Session {}),
    }
}

/// Whether this build can join MPI.
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

#[cfg(feature = "mpi")]
fn install(world: Box<dyn Collective>) -> Result<()> {
    WORLD
        .set(world)
        .map_err(|_| Error::Init("joined twice".into()))
}
