//! Plugin logs reach the host's subscriber.
//!
//! Each cdylib statically links its own copy of `tracing`, with its own (empty) dispatcher, so a
//! plugin's events would vanish. At load the host hands every library a [`LogSink`]: a C callback
//! into the host's `tracing`. The plugin installs a subscriber that formats each event and calls it.

use std::fmt::Write as _;

use abi_stable::StableAbi;
use abi_stable::std_types::RStr;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogSink {
    /// 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub max_level: u8,
    pub log: extern "C" fn(level: u8, target: RStr<'_>, message: RStr<'_>),
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn filter_code(filter: LevelFilter) -> u8 {
    filter.into_level().map(level_code).unwrap_or(0)
}

fn code_filter(code: u8) -> LevelFilter {
    match code {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

extern "C" fn log_into_host(level: u8, target: RStr<'_>, message: RStr<'_>) {
    let (target, message) = (target.as_str(), message.as_str());
    match level {
        1 => tracing::error!(target: "longrl::plugin", plugin_target = target, "{message}"),
        2 => tracing::warn!(target: "longrl::plugin", plugin_target = target, "{message}"),
        3 => tracing::info!(target: "longrl::plugin", plugin_target = target, "{message}"),
        4 => tracing::debug!(target: "longrl::plugin", plugin_target = target, "{message}"),
        _ => tracing::trace!(target: "longrl::plugin", plugin_target = target, "{message}"),
    }
}

impl LogSink {
    /// The sink of the calling binary, filtered at its current maximum level.
    pub fn to_host() -> Self {
        LogSink { max_level: filter_code(LevelFilter::current()), log: log_into_host }
    }
}

#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

struct ForwardToHost(LogSink);

impl<S: Subscriber> Layer<S> for ForwardToHost {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = EventText::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let meta = event.metadata();
        (self.0.log)(level_code(*meta.level()), meta.target().into(), text.message.as_str().into());
    }
}

/// Plugin side: make this library's `tracing` forward to `sink`. Later calls are ignored.
pub fn install_plugin_logger(sink: LogSink) {
    let subscriber = tracing_subscriber::registry().with(ForwardToHost(sink).with_filter(code_filter(sink.max_level)));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
