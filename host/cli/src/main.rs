//! The `longrl` binary: command-line parsing ([`cli`]) and one module per subcommand ([`commands`])
//! wiring the host crates together.

mod cli;
mod commands;
mod logging;

fn main() -> std::process::ExitCode {
    longrl_core::memory::return_large_frees_to_os();
    cli::main()
}
