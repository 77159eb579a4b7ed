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
        transfer::child_main(&transfer::TransferArgs {
            method: t.method,
            path: t.path,
            size: t.size,
            block_size: t.block_size,
            addr: t.addr,
            port: t.port,
            token: t.token,
            dest: t.dest,
            report_fd: t.report_fd,
        });
    }
    app::main(cli.command)
}
