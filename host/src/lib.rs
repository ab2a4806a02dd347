//! The longrl host as a library: the `longrl` binary is a thin `main` over [`cli`], and integration
//! tests drive the same code.

pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod eval;
pub mod logging;
pub mod plugins;
pub mod rewards;
pub mod serve;
pub mod synth;
pub mod train;
