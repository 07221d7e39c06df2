//! deepgen-nn: layers (`Module`), initialisers, losses and PyTorch-compatible
//! state dicts. Not built yet: it arrives with the layers issue, on top of
//! deepgen-autograd.
