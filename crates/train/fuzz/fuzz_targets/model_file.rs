//! A model file on arbitrary input, as `sample`, `eval` and `--init` read
//! it: the safetensors header and body, then the model its metadata
//! describes (a VAE config, a GAN net spec) built and filled. It must load
//! or fail with an error — never panic, and never allocate what crafted
//! metadata claims (libFuzzer's -malloc_limit_mb / -rss_limit_mb make an
//! over-allocation a crash). Seeds: `seeds/model_file/` (real files of
//! each model, and the crafted cases of issue 18).
#![no_main]

use std::path::Path;

use deepgen_nn::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A user's budget of 1 GiB: the sizes that pass the budget but not
    // the file are what `within_file` must catch.
    deepgen_nn::budget::set_limit(1 << 30);
    let path = Path::new("fuzzed.safetensors");
    let Ok((tensors, meta)) = checkpoint::from_bytes(path, data) else {
        return;
    };
    let _ = deepgen_vae::Vae::from_loaded(path, tensors.clone(), meta.clone());
    let _ = deepgen_gan::spec::generator_from_loaded(path, tensors, &meta);
});
