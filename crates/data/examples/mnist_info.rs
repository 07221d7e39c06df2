//! Loads an MNIST-family folder and prints what it holds.
//!
//!     cargo run --release -p deepgen-data --example mnist_info -- DIR [train|test]

use std::path::PathBuf;

use deepgen_data::{idx, Dataset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: mnist_info DIR [train|test]")?);
    let train = args.next().as_deref() == Some("train");
    let start = std::time::Instant::now();
    let d = idx::load_split(&dir, train)?;
    println!(
        "{} items of shape {:?}, {:?} classes, first label {:?} (loaded in {:.0} ms)",
        d.len(),
        d.item_shape(),
        d.num_classes(),
        d.label(0),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
