//! `longrl serve --model DIR`: the policy plugin behind an OpenAI-compatible HTTP API, for
//! evaluation and as the judge's endpoint in tests.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use longrl_core::api::ComponentContext;
use longrl_core::device::device_name;

use crate::cli::GlobalArgs;
use longrl_serve::{Engine, EngineOptions, ServeOptions, router};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (HF layout) handed to the policy plugin as its `model` key.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Address to bind. Loopback by default: the API has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind (0 picks a free one; the bound address is printed as `listening on http://ADDR`).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Name clients send as `model` (default: the model directory's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Request bodies larger than this get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Prompts x samples of concurrent requests batched into one generation call at most.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// How long the worker waits for more requests to batch with the first one (milliseconds).
    #[arg(long, default_value_t = 5)]
    pub batch_window_ms: u64,
    /// Requests waiting for the generation worker at most; more get 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// `max_tokens` of a chat request that gives none.
    #[arg(long, default_value_t = 1024)]
    pub default_max_tokens: u32,
    /// Serve vLLM's weight-transfer routes (disk backend: `/init_weight_transfer_engine`,
    /// `/start_weight_update`, `/update_weights`, `/finish_weight_update`, `/pause`, `/resume`, ...), so
    /// a trainer with `[rollout] backend = "vllm"` can push its weights after every step. They let any
    /// client replace the served weights: off by default.
    #[arg(long)]
    pub weight_transfer: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    if !args.model.is_dir() {
        anyhow::bail!("--model {}: not a model directory", args.model.display());
    }
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let config = global.load_config()?;
    let plugins = global.load_plugins(&config)?;
    let device = config.device.resolve()?;
    let ctx = ComponentContext { run_dir: None, seed: config.seed, device: device_name(device) };
    // The configured policy table, with the served model directory on top.
    let mut policy_config = match &config.policy.config {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    policy_config.insert("model".into(), serde_json::Value::String(args.model.display().to_string()));
    let policy = plugins
        .policy(&config.policy.name, &serde_json::Value::Object(policy_config), &ctx)
        .with_context(|| format!("loading the policy from {}", args.model.display()))?;
    let engine = Engine::start(
        policy,
        EngineOptions {
            max_batch: args.max_batch,
            batch_window: Duration::from_millis(args.batch_window_ms),
            queue_capacity: args.queue,
        },
    )?;
    let model_name = args.served_model_name.clone().unwrap_or_else(|| {
        let dir = args.model.canonicalize().unwrap_or_else(|_| args.model.clone());
        dir.file_name().map_or_else(|| "longrl".to_string(), |n| n.to_string_lossy().into_owned())
    });
    let options = ServeOptions {
        model_name,
        max_body_bytes: args.max_body_bytes,
        chat_default_max_tokens: args.default_max_tokens,
        weight_transfer: args.weight_transfer,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let served = runtime.block_on(serve(engine.clone(), &options, SocketAddr::new(args.host, args.port)));
    engine.shutdown();
    drop(engine);
    drop(plugins); // after the policy: its code lives in a plugin library
    served
}

async fn serve(engine: Engine, options: &ServeOptions, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {addr}"))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!("serving on {bound}, reachable from other machines: this API has no authentication");
        if options.weight_transfer {
            tracing::warn!("--weight-transfer on {bound}: any client that reaches it can replace the served weights");
        }
    }
    tracing::info!(model = %options.model_name, "serving the OpenAI-compatible API");
    // Tests and scripts read this line to learn the port.
    println!("listening on http://{bound}");
    std::io::stdout().flush()?;
    axum::serve(listener, router(engine, options)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
