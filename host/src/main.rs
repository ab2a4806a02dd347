//! The `longrl` binary.

fn main() -> std::process::ExitCode {
    longrl_host::cli::main()
}
