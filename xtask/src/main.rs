//! Project tasks: `cargo xtask <task>`.
//!
//! - `gradcheck [--seed N]`: finite-difference checks of every differentiable
//!   op, layer and loss, first and second order; prints a table, exits
//!   non-zero on a failure.
//! - `download <mnist|fashion-mnist|kmnist|cifar10> [--dir DIR]`: fetches a
//!   data set into DIR (default `data/<name>`), checking every SHA-256.
//! - `crash-test [--trials N] [--seed S] [--release]`: kill -9, crashes
//!   at every step of a checkpoint write, SIGINT and a full disk, each
//!   resumed and compared with an uninterrupted run byte for byte.

mod crash;

use std::process::ExitCode;

use deepgen_autograd::gradcheck::{cases, check, print_table};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gradcheck") => gradcheck(&args[1..]),
        Some("download") => download(&args[1..]),
        Some("crash-test") => crash::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask gradcheck [--seed N]");
            eprintln!("       cargo xtask {DOWNLOAD_USAGE}");
            eprintln!("       cargo xtask {}", crash::USAGE);
            ExitCode::from(2)
        }
    }
}

fn gradcheck(args: &[String]) -> ExitCode {
    let seed = match args {
        [] => 0,
        [flag, n] if flag == "--seed" => match n.parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("gradcheck: --seed takes a whole number, got {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: cargo xtask gradcheck [--seed N]");
            return ExitCode::from(2);
        }
    };
    let all = cases::all().into_iter().chain(deepgen_nn::gradcheck::all());
    let reports: Vec<_> = all.flat_map(|c| check(&c, seed)).collect();
    if print_table(&reports) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

const DOWNLOAD_USAGE: &str = "download <mnist|fashion-mnist|kmnist|cifar10> [--dir DIR]";

fn download(args: &[String]) -> ExitCode {
    use deepgen_data::download::{datasets, download, DownloadOptions};
    use std::path::PathBuf;

    let (name, dir) = match args {
        [name] => (name, PathBuf::from("data").join(name)),
        [name, flag, dir] if flag == "--dir" => (name, PathBuf::from(dir)),
        _ => {
            eprintln!("usage: cargo xtask {DOWNLOAD_USAGE}");
            return ExitCode::from(2);
        }
    };
    if !datasets().any(|d| d == name) {
        eprintln!("download: unknown data set {name:?}");
        eprintln!("usage: cargo xtask {DOWNLOAD_USAGE}");
        return ExitCode::from(2);
    }
    match download(name, &dir, &DownloadOptions::default()) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("download: {e}");
            ExitCode::FAILURE
        }
    }
}
