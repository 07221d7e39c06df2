//! deepgen-gan: generative adversarial networks (Goodfellow et al., arXiv
//! 1406.2661).
//!
//! - [`MlpGenerator`] / [`MlpDiscriminator`]: fully connected nets for 2-D
//!   point sets and small images;
//! - [`DcganGenerator`] / [`DcganDiscriminator`]: DCGAN for 28x28, 32x32 and
//!   64x64 images, as pytorch/examples builds it;
//! - class-conditional variants of both, through a label embedding;
//! - [`loss`]: non-saturating, minimax, least-squares, hinge and Wasserstein
//!   losses, WGAN-GP's gradient penalty and R1, differentiated through
//!   their gradients (double backward);
//! - [`trainer`]: alternating discriminator and generator steps with two
//!   Adam optimizers, metrics, sample grids, an EMA generator, checkpoints
//!   and exact resume;
//! - [`eval2d`]: the VEEGAN mode-coverage benchmark on ring8 and grid25.
//!
//! Every net names its state as a PyTorch `nn.Sequential` called `net`
//! (plus `embed` when conditional), so checkpoints load into the same
//! PyTorch modules unchanged. Models are generic over the element type; the
//! trainer runs in f32, gradient checks in f64.

mod dcgan;
mod error;
pub mod eval2d;
pub mod loss;
mod mlp;
pub mod net;
pub mod spec;
pub mod trainer;

pub use dcgan::{DcganConfig, DcganDiscriminator, DcganGenerator};
pub use error::{Error, Result};
pub use loss::{discriminator_loss, generator_loss, gradient_penalty, r1_penalty, GanLoss};
pub use mlp::{MlpDiscriminator, MlpGanConfig, MlpGenerator};
pub use net::{Activation, Discriminator, Generator};
pub use spec::{load_generator, save_net, NetSpec};
