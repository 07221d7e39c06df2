//! Project tasks: `cargo xtask <task>`.
//!
//! - `gradcheck [--seed N]`: finite-difference checks of every differentiable
//!   op, layer and loss, first and second order; prints a table, exits
//!   non-zero on a failure.

use std::process::ExitCode;

use deepgen_autograd::gradcheck::{cases, check, print_table};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gradcheck") => gradcheck(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask gradcheck [--seed N]");
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
