//! deepgen-optim: SGD, Adam, AdamW, RMSprop, schedules and gradient clipping.
//! Not built yet: it arrives with the layers/optimizers issue.
