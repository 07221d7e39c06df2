//! The `deepgen` command line: glue between flags and the libraries, one
//! module per command (`cmd/`).

use std::process::ExitCode;

use clap::Parser;

mod cmd;

fn main() -> ExitCode {
    // Ctrl-C: a training run stops at the next step with a checkpoint; a
    // second Ctrl-C, or one while nothing trains, exits at once (files on
    // disk are complete at every moment, so nothing is left half-written).
    let _ = ctrlc::set_handler(|| {
        if deepgen_train::interrupt::request() {
            eprintln!(
                "\nstopping after this step with a checkpoint (Ctrl-C again to stop at once)"
            );
        } else {
            eprintln!("\ninterrupted");
            std::process::exit(130);
        }
    });
    let args = match cmd::expand_config(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => return report(&e),
    };
    match cmd::run(cmd::Cli::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints the error and its causes on one line, each cause once, no
/// backtrace (these are the user's errors, not the program's); returns
/// the exit code: 2 for usage errors (as clap's own), 1 otherwise.
fn report(e: &deepgen_cli::Error) -> ExitCode {
    let mut line = format!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    eprintln!("{line}");
    ExitCode::from(e.exit_code())
}
