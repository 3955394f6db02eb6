//! The `loa` binary: runs any Loa service, or all of them in one process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    loa::cli::run(std::env::args_os()).await
}
