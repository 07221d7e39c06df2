//! Times the generation of the built-in synthetic digits and writes a grid
//! of the first 64 (`docs/synthetic-digits.png` is made this way).
//!
//!     cargo run --release -p deepgen-train --example synthetic_digits -- OUT.png

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = std::time::Instant::now();
    let d = deepgen_data::synthetic::digits(10_000, 0)?;
    println!("10000 digits in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "synthetic-digits.png".into());
    let loader = deepgen_data::DataLoader::new(
        std::sync::Arc::new(d),
        deepgen_data::LoaderConfig {
            batch_size: 64,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let batch = loader.batch((0..64).collect())?;
    deepgen_train::grid::save_grid(
        std::path::Path::new(&out),
        &batch.images,
        Default::default(),
    )?;
    println!("wrote {out}");
    Ok(())
}
