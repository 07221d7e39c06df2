//! MPI's world through rsmpi (the `mpi` feature).

use std::thread::ThreadId;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

use crate::{Collective, Error, Result};

/// MPI_COMM_WORLD, used from the thread that initialised MPI.
struct MpiWorld {
    comm: SimpleCommunicator,
    thread: ThreadId,
    rank: usize,
    size: usize,
    library: String,
    send: std::sync::Mutex<Vec<f32>>,
}

// SAFETY: MPI was initialised with MPI_THREAD_FUNNELED and every method
// checks that it runs on the initialising thread before touching `comm`;
// the handle itself is a plain value.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    fn comm(&self) -> &SimpleCommunicator {
        assert_eq!(
            std::thread::current().id(),
            self.thread,
            "deepgen-dist: a collective was called off the thread that initialised MPI"
        );
        &self.comm
    }
}

/// Initialises MPI and installs its world as [`crate::world`].
pub(crate) fn join() -> Result<Universe> {
    let (universe, _level) = mpi::initialize_with_threading(Threading::Funneled)
        .ok_or_else(|| Error::Init("MPI was initialised already".into()))?;
    let comm = universe.world();
    let library = mpi::environment::library_version()
        .map(|v| v.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|_| "unknown library".into());
    let world = MpiWorld {
        rank: comm.rank() as usize,
        size: comm.size() as usize,
        comm,
        thread: std::thread::current().id(),
        library,
        send: Default::default(),
    };
    crate::install(Box::new(world))?;
    Ok(universe)
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, data: &mut [f32]) {
        // MPI reads the send buffer while writing the result: a copy, kept
        // between calls (its pages fault in once, not every update).
        let mut send = self.send.lock().unwrap_or_else(|e| e.into_inner());
        send.clear();
        send.extend_from_slice(data);
        self.comm()
            .all_reduce_into(&send[..], data, SystemOperation::sum());
    }

    fn sum_f64(&self, data: &mut [f64]) {
        let send = data.to_vec();
        self.comm()
            .all_reduce_into(&send[..], data, SystemOperation::sum());
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let root = self.comm().process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let comm = self.comm();
        let mut lens = vec![0 as Count; self.size];
        comm.all_gather_into(&(bytes.len() as Count), &mut lens[..]);
        let displs: Vec<Count> = lens
            .iter()
            .scan(0, |at, &n| {
                let d = *at;
                *at += n;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; lens.iter().map(|&n| n as usize).sum()];
        {
            let mut parts = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            comm.all_gather_varcount_into(bytes, &mut parts);
        }
        lens.iter()
            .zip(&displs)
            .map(|(&n, &d)| all[d as usize..(d + n) as usize].to_vec())
            .collect()
    }

    fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    fn engine(&self) -> String {
        format!("MPI ({}), {} ranks", self.library, self.size)
    }
}
