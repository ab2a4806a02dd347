//! `tracing` events emitted inside a plugin reach the host's subscriber.

use std::sync::{Arc, Mutex};

use longrl_core::api::ComponentContext;
use longrl_plugins::PluginSet;
use longrl_tests::plugin_library;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!("{}={} ", field.name(), value));
            }
        }
        let mut fields = Fields(format!("{} {} ", event.metadata().level(), event.metadata().target()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[test]
fn plugin_events_arrive_at_the_host_subscriber() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let set = PluginSet::load(&[plugin_library("longrl-fixture-faulty")]).unwrap();
    let _algorithm = set.algorithm("square", &serde_json::json!({}), &ComponentContext::default()).unwrap();
    let lines = captured.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("INFO longrl::plugin")
            && l.contains("plugin_target=fixture")
            && l.contains("square loss created")),
        "{lines:#?}"
    );
}
