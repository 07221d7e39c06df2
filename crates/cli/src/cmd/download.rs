//! `deepgen download`.

use std::path::PathBuf;

use deepgen_cli::Result;
use serde::Serialize;

/// Download a data set, verifying every file's SHA-256.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// mnist, fashion-mnist, kmnist or cifar10
    dataset: String,
    /// Target folder [default: data/DATASET]
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let dir = a
        .dir
        .unwrap_or_else(|| PathBuf::from("data").join(&a.dataset));
    let files = deepgen_data::download::download(&a.dataset, &dir, &Default::default())?;
    for f in &files {
        println!("{}", f.display());
    }
    // CIFAR-10 comes as one archive: unpacked here, `--dataset cifar10
    // --data-dir DIR` reads its batches.
    if a.dataset == "cifar10" {
        let archive = dir.join(deepgen_data::cifar::ARCHIVE);
        deepgen_data::cifar::extract(&archive, &dir)?;
        println!("{}", dir.join(deepgen_data::cifar::BATCHES).display());
    }
    Ok(())
}
