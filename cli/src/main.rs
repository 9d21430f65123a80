//! `provchain`: parses the command line and runs it; failures are one line on stderr.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = provchain_cli::Cli::parse();
    match provchain_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provchain: {}", provchain_cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
