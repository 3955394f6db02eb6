//! The `loa` binary: runs any Loa service, or all of them in one process.

/// jemalloc instead of glibc's allocator: the services allocate many short-lived
/// buffers (JSON, AMQP frames, HTTP bodies) across tokio's worker threads, and
/// `loa bench pipeline` measured about 10 % less CPU per event with it, at the same
/// peak RSS (mimalloc saved as much CPU but doubled the tracker's RSS).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    loa::cli::run(std::env::args_os()).await
}
