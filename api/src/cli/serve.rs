//! `pled serve`.

use std::process::ExitCode;

use pled_api::config::{LogFormat, ServeArgs, ServeConfig};
use tracing_subscriber::EnvFilter;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::load(&args)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init(),
        LogFormat::Pretty => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let reload: pled_api::server::Reload = Box::new(move || ServeConfig::load(&args));
    rt.block_on(pled_api::server::run(config, Some(reload), pled_api::server::shutdown_signal()))?;
    // The runtime's idle tasks still hold the store: dropping them closes it, and only then
    // is the shutdown complete.
    let closing = std::time::Instant::now();
    drop(rt);
    tracing::info!(ms = closing.elapsed().as_millis() as u64, "shutdown complete: the store is closed");
    Ok(ExitCode::SUCCESS)
}
