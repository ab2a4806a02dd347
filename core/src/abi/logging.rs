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

/// Levels cross as codes: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogSink {
    /// Whether the host currently wants events of this level (asked per event, so the host's
    /// filter can change after the plugin was loaded).
    pub enabled: extern "C" fn(level: u8) -> bool,
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

fn code_level(code: u8) -> Level {
    match code {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

extern "C" fn host_enabled(level: u8) -> bool {
    code_level(level) <= LevelFilter::current()
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
    /// The sink of the calling binary: events go to its subscriber, filtered by its current level.
    pub fn to_host() -> Self {
        LogSink { enabled: host_enabled, log: log_into_host }
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
    fn register_callsite(&self, _meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        // Never cache a verdict: the host's filter may change.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        (self.0.enabled)(level_code(*meta.level()))
    }
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = EventText::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let meta = event.metadata();
        (self.0.log)(level_code(*meta.level()), meta.target().into(), text.message.as_str().into());
    }
}

/// Plugin side: make this library's `tracing` forward to `sink`. Later calls are ignored.
///
/// Also replaces this library's panic hook (each cdylib has its own copy of std): a panic in plugin
/// code is caught at the boundary and returned to the host as an error, so the default hook's
/// stderr dump (with libtorch's C++ stack trace) would only repeat it; it goes to the debug log.
pub fn install_plugin_logger(sink: LogSink) {
    let subscriber = tracing_subscriber::registry().with(ForwardToHost(sink));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            tracing::debug!("plugin panicked{location}: {}", super::plugin_side::without_cpp_backtrace(&message));
        }));
    }
}
