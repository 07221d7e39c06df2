//! What a data-parallel run adds to the loop, beside the gradient sum in
//! [`Updater`](crate::Updater): every rank started with the same settings,
//! the step's values averaged over the ranks (so rank 0 logs the global
//! batch's), a stop on request that all ranks take together, and
//! BatchNorm's running statistics kept as rank 0's (PyTorch DDP's
//! `broadcast_buffers`). In one process none of this runs.

use deepgen_nn::Slot;
use serde_json::Value;

use crate::run::config_differences;
use crate::task::{StepValues, Task};
use crate::{Error, Result};

/// Settings each rank may hold its own: how it shows and runs, not what it
/// computes.
const PER_RANK_KEYS: [&str; 3] = ["threads", "progress", "quiet"];

/// Every rank's settings must be rank 0's (outside [`PER_RANK_KEYS`]); a
/// difference stops every rank, naming the rank and the settings.
pub(crate) fn check_same_settings(record: &Value) -> Result<()> {
    let world = deepgen_dist::world();
    let mine = serde_json::to_vec(record).expect("JSON values serialise");
    let all = world.all_gather(&mine);
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    let first = parse(&all[0]);
    let diffs: Vec<String> = (all.iter().enumerate().skip(1))
        .filter_map(|(rank, bytes)| {
            let d = config_differences(&first, &parse(bytes), &PER_RANK_KEYS);
            (!d.is_empty()).then(|| format!("rank {rank} differs from rank 0 in {}", d.join(", ")))
        })
        .collect();
    match diffs.is_empty() {
        true => Ok(()),
        false => Err(Error::Invalid {
            op: "train",
            msg: format!(
                "the {} ranks were started with different settings ({}); start every rank with the same command",
                world.size(),
                diffs.join("; ")
            ),
        }),
    }
}

/// The step's values as means over the global batch, and whether any rank
/// was asked to stop (so all stop at the same step).
pub(crate) fn reduce_step(values: StepValues, stop: bool) -> (StepValues, bool) {
    let mut sums = vec![values.items as f64, f64::from(u8::from(stop))];
    for v in &values.values {
        let w = if v.is_some() {
            values.items as f64
        } else {
            0.0
        };
        sums.extend([v.unwrap_or(0.0) * w, w]);
    }
    deepgen_dist::world().sum_f64(&mut sums);
    let means = sums[2..]
        .chunks(2)
        .map(|c| (c[1] > 0.0).then(|| c[0] / c[1]))
        .collect();
    (StepValues::new(sums[0] as usize, means), sums[1] > 0.0)
}

/// Every rank's model must be rank 0's, bit for bit (parameters and
/// buffers): checked at each epoch's end from a 64-bit digest per rank, so
/// a divergence (a rank-local random draw, say) stops the run instead of
/// training N different models.
pub(crate) fn check_ranks_agree(task: &dyn Task, epoch: usize) -> Result<()> {
    let world = deepgen_dist::world();
    let digests: Vec<u64> = (world.all_gather(&digest(task).to_le_bytes()).iter())
        .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
        .collect();
    disagreement(&digests, epoch).map_or(Ok(()), |msg| Err(Error::Invalid { op: "train", msg }))
}

/// The message for ranks whose digests are not rank 0's, if any.
fn disagreement(digests: &[u64], epoch: usize) -> Option<String> {
    let off: Vec<String> = (digests.iter().enumerate())
        .filter(|(_, d)| **d != digests[0])
        .map(|(r, _)| r.to_string())
        .collect();
    (!off.is_empty()).then(|| {
        format!(
            "after epoch {}, the model of rank(s) {} differs from rank 0's: the ranks no longer train one model (a step drew something per rank?)",
            epoch + 1,
            off.join(", ")
        )
    })
}

/// FNV-1a over the bits of every parameter and buffer of the task.
fn digest(task: &dyn Task) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, m) in task.modules() {
        m.visit(&mut |_, slot| {
            if let Slot::Parameter(v) | Slot::Buffer(v) = slot {
                for x in v.value().to_vec() {
                    for byte in x.to_bits().to_le_bytes() {
                        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
        });
    }
    h
}

/// Whether a stop was requested ([`crate::interrupt`]) on any rank.
pub(crate) fn stop_requested() -> bool {
    let mut flag = [f64::from(u8::from(crate::interrupt::requested()))];
    deepgen_dist::world().sum_f64(&mut flag);
    flag[0] > 0.0
}

/// Every module's buffers (BatchNorm's running statistics) replaced by
/// rank 0's: unsynchronised BatchNorm sees each rank's share alone, and the
/// ranks' models must stay one model.
pub(crate) fn broadcast_buffers(task: &dyn Task) -> Result<()> {
    let world = deepgen_dist::world();
    let mut buffers = Vec::new();
    for (_, m) in task.modules() {
        m.visit(&mut |_, slot| {
            if let Slot::Buffer(v) = slot {
                buffers.push(v.clone());
            }
        });
    }
    if buffers.is_empty() {
        return Ok(());
    }
    let mut bytes: Vec<u8> = match world.rank() {
        0 => (buffers.iter())
            .flat_map(|b| b.value().to_vec())
            .flat_map(f32::to_le_bytes)
            .collect(),
        _ => Vec::new(),
    };
    world.broadcast(&mut bytes);
    if world.rank() == 0 {
        return Ok(());
    }
    let mut values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")));
    for b in buffers {
        let data: Vec<f32> = values.by_ref().take(b.numel()).collect();
        b.set_value(deepgen_autograd::Tensor::from_vec(data, &b.shape())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_whose_digest_differs_is_named() {
        assert_eq!(disagreement(&[7, 7, 7], 0), None);
        let msg = disagreement(&[7, 7, 8], 2).unwrap();
        assert!(
            msg.contains("after epoch 3") && msg.contains("rank(s) 2 differs"),
            "{msg}"
        );
    }

    #[test]
    fn in_one_process_the_step_values_are_the_steps() {
        let v = StepValues::new(4, vec![Some(2.0), None]);
        let (r, stop) = reduce_step(v.clone(), false);
        assert_eq!((r, stop), (v, false));
    }
}
