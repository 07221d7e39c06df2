//! The IDX reader on arbitrary bytes, raw and as if gzip-inflated: it must
//! return Ok or Err, never panic or read out of bounds.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    if let Ok(idx) = deepgen_data::idx::parse(path, data) {
        let n: usize = idx.dims.iter().product();
        assert_eq!(n, idx.data.len());
    }
    let _ = deepgen_data::cifar::parse_batch(path, data);
});
