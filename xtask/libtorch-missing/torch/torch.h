// Found only when libtorch is not set up: .cargo/config.toml adds this directory to CPATH, which
// the compiler searches after the real libtorch include directories.
#error "libtorch is not set up: run `cargo xtask setup` once (it installs torch 2.13.0 into .venv and links it as .libtorch)"
// Stop the compiler here instead of a screenful of follow-on errors.
#include "longrl/stop-run-cargo-xtask-setup.h"
