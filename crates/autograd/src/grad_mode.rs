//! Whether ops record the graph, per thread (as PyTorch's grad mode).

use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True when ops on this thread record backward rules.
pub fn is_grad_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Turns recording off until dropped, then restores the previous mode.
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> Self {
        NoGradGuard {
            previous: ENABLED.with(|e| e.replace(false)),
        }
    }

    /// A guard that sets recording to `enabled` (used by `grad` to switch it
    /// back on for `create_graph`).
    pub fn set(enabled: bool) -> Self {
        NoGradGuard {
            previous: ENABLED.with(|e| e.replace(enabled)),
        }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.previous));
    }
}

/// Runs `f` with recording off (PyTorch's `torch.no_grad()`): for
/// evaluation and sampling, where no backward follows and the graph would
/// only hold memory. [`NoGradGuard`] does the same for a scope.
///
/// ```
/// use deepgen_autograd::{is_grad_enabled, no_grad, Tensor, Var};
///
/// let w = Var::<f32>::parameter(Tensor::ones(&[3]));
/// let y = no_grad(|| {
///     assert!(!is_grad_enabled());
///     w.mul_scalar(2.0)
/// });
/// assert!(is_grad_enabled()); // restored on return
/// assert!(!y.requires_grad() && y.op_name().is_none()); // no graph was recorded
/// assert!(w.mul_scalar(2.0).requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}
