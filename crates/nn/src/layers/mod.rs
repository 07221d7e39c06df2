//! The layers, one concept per file.

mod activation;
mod conv;
mod dropout;
mod embedding;
mod linear;
mod norm;
mod pool;
mod recurrent;
mod sequential;
mod shape;

pub use activation::{LeakyRelu, Relu, Sigmoid, Tanh};
pub use conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{set_sync_batch_norm, sync_batch_norm, BatchNorm, BatchNormConfig, LayerNorm};
pub use pool::{AvgPool2d, MaxPool2d};
pub use recurrent::{Gru, Lstm, RnnConfig, RnnState};
pub use sequential::Sequential;
pub use shape::{Flatten, Unflatten};
