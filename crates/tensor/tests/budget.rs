//! The memory budget in a process of its own (the limit is process-wide).

use deepgen_tensor::{budget, Tensor};

#[test]
fn buffers_pooled_for_reuse_give_way_to_a_fresh_one_and_live_bytes_balance() {
    budget::set_limit(64 << 20);
    budget::quiet_hook();
    let before = budget::live_bytes();
    // 40 MiB of distinct lengths, dropped: the pool keeps them (counted).
    for i in 0..10 {
        drop(Tensor::<f32>::zeros(&[(1 << 20) + i]));
    }
    assert!(budget::live_bytes() >= before + (40 << 20));
    // 48 MiB more fits only once the pool lets go.
    let big = budget::catch(|| Tensor::<f32>::zeros(&[12 << 20])).unwrap();
    drop(big);
    // Over the budget even with nothing pooled: an error, not an abort.
    let e = budget::catch(|| Tensor::<f64>::zeros(&[16 << 20]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the memory budget of 64.0 MiB"), "{e}");
    // The count never exceeds the budget.
    assert!(budget::live_bytes() <= 64 << 20);
}
