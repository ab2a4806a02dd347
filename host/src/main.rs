//! The `longrl` binary.

fn main() -> std::process::ExitCode {
    longrl_core::memory::return_large_frees_to_os();
    longrl_host::cli::main()
}
