//! What a run records: per-step metrics in `RUN_DIR/metrics.jsonl` ([`MetricsLog`]), the same scalars as
//! TensorBoard event files ([`tfevents`]) and PNG curves drawn from the log ([`plot`]).

mod jsonl;
pub mod plot;
pub mod tfevents;

pub use jsonl::{METRICS_FILE, MetricsLog, Record, mean_std, read_metrics, without_timing};
