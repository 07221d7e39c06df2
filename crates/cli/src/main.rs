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
    // Under mpirun (with the mpi feature) this process joins its ranks;
    // MPI is left when the session drops, after the command.
    let _session = match deepgen_dist::init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let errors = quiet_other_ranks();
    let args = match cmd::expand_config(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => return report(&e, errors),
    };
    match cmd::run(cmd::Cli::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = report(&e, errors);
            let world = deepgen_dist::world();
            if world.size() > 1 {
                // The other ranks may be waiting in a collective for this
                // one: end them all (mpirun reports it), never hang.
                world.abort(i32::from(e.exit_code()));
            }
            code
        }
    }
}

/// Prints the error and its causes on one line, each cause once, no
/// backtrace (these are the user's errors, not the program's); returns
/// the exit code: 2 for usage errors (as clap's own), 1 otherwise.
fn report(e: &deepgen_cli::Error, errors: Option<std::fs::File>) -> ExitCode {
    let world = deepgen_dist::world();
    let mut line = match world.size() {
        1 => format!("error: {e}"),
        _ => format!("error (rank {}): {e}", world.rank()),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    match errors {
        Some(mut f) => {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
        None => eprintln!("{line}"),
    }
    ExitCode::from(e.exit_code())
}

/// In a data-parallel run, ranks but 0 print nothing (their output is
/// rank 0's, repeated): stdout and stderr go to /dev/null. Returns the
/// original stderr, where such a rank still reports its own error.
#[cfg(unix)]
fn quiet_other_ranks() -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    if deepgen_dist::world().rank() == 0 {
        return None;
    }
    // SAFETY: plain descriptor calls on this process's own descriptors;
    // the duplicate is owned by the File returned.
    unsafe {
        let saved = libc::dup(2);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if saved < 0 || null < 0 {
            return None;
        }
        libc::dup2(null, 1);
        libc::dup2(null, 2);
        libc::close(null);
        Some(std::fs::File::from_raw_fd(saved))
    }
}

#[cfg(not(unix))]
fn quiet_other_ranks() -> Option<std::fs::File> {
    None
}
