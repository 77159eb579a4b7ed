//! zcprof's entry point: parse, run, exit.
use std::process::ExitCode;

use zcprof::{
    app,
    cli::{self, Command},
    timing,
    workload::transfer,
};

fn main() -> ExitCode {
    let _ = timing::STARTED.set(std::time::Instant::now());
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Command::Transfer(t) = cli.command {
        // The measured child: no runtime, no logging, nothing but the transfer.
        transfer::child_main(&t);
    }
    app::main(cli.command)
}
