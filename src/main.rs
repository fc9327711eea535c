//! The `cxreport` command: the library's command line ([`cxreport::cli`], which also
//! starts the log) with the process's allocator.

use std::process::ExitCode;

// Large runs allocate and free millions of rows: mimalloc keeps freed memory for reuse
// where the system allocator hands it back and faults it in again (scale 100: load +
// metrics −25 %). Without transparent huge pages: each 2 MiB page is zeroed whole on
// first touch, which cost more than it saved (scale 300: metrics 2.2 s → 1.6 s).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cxreport::cli::main()
}
