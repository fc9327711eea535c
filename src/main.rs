//! The `cxreport` command: the library's command line ([`cxreport::cli`]) with the
//! process's allocator.

use std::process::ExitCode;

// Large runs allocate and free millions of rows: mimalloc keeps freed memory for reuse
// where the system allocator hands it back and faults it in again (scale 100: load +
// metrics −25 %). Without transparent huge pages: each 2 MiB page is zeroed whole on
// first touch, which cost more than it saved (scale 300: metrics 2.2 s → 1.6 s).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: in a file or the journal they are noise.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    cxreport::cli::main()
}
