//! deepgen-vae: VAE models, the ELBO and IWAE bounds, sampling and the
//! trainer. Not built yet: it arrives with the VAE issue.
