//! deepgen-gan: GAN models, losses (incl. WGAN-GP), the trainer and the 2-D
//! mode-coverage benchmark. Not built yet: it arrives with the GAN issue.
