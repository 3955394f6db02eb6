//! The `loa` binary: runs any Loa service, or all of them in one process.

use std::process::ExitCode;

/// jemalloc instead of glibc's allocator: the services allocate many short-lived
/// buffers (JSON, AMQP frames, HTTP bodies) across tokio's worker threads, and
/// `loa bench pipeline` measured about 10 % less CPU per event with it, at the same
/// peak RSS (mimalloc saved as much CPU but doubled the tracker's RSS).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs the command. A failure is one line on stderr, its causes joined by `: `
/// (`loa: Failed to start intake: 127.0.0.1:8080 is already in use …`), never a
/// backtrace: the operator needs what went wrong and which setting to change.
#[tokio::main]
async fn main() -> ExitCode {
    match loa::cli::run(std::env::args_os()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loa: {e:#}");
            ExitCode::FAILURE
        }
    }
}
