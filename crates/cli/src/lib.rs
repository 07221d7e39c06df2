//! deepgen-cli: the `deepgen` binary (train / sample / eval / download).
//! Not built yet: it arrives with the VAE and GAN issues.
