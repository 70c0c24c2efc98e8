//! `pled serve`: open the store, build the app, listen, and shut down gracefully (stop
//! accepting, end streams and long-polls, finish in-flight requests, let the writer commit
//! everything submitted).

use std::future::Future;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pled_store::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::auth::JwtConfig;
use crate::config::{ChainMode, ServeConfig};
use crate::devchain::DevChain;
use crate::hub::Hub;
use crate::lanes::Lanes;
use crate::state::{AppState, KeyLocks, Services};
use alloy::signers::local::PrivateKeySigner;
use pled_committer::chain::{ChainConfig, Publisher};
use std::time::Duration;

/// The process-wide Prometheus recorder (metrics macros report to one global recorder).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness): then our
            // handle renders an empty page rather than failing the server.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Drains the recorder's pending histogram samples every few seconds. The recorder keeps
/// every sample (one per request) until a scrape of `/metrics` or an upkeep drains it, so a
/// server nobody scrapes would otherwise grow with every request.
async fn metrics_upkeep(handle: PrometheusHandle, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            _ = stopped.changed() => return,
        }
    }
}

/// JWT settings from the config and the environment (`PLED_JWT_SECRET`).
pub fn jwt_config(config: &ServeConfig) -> anyhow::Result<JwtConfig> {
    let mut jwt = JwtConfig::default();
    if let Ok(secret) = std::env::var("PLED_JWT_SECRET")
        && !secret.is_empty()
    {
        anyhow::ensure!(secret.len() >= 32, "PLED_JWT_SECRET must be at least 32 bytes");
        jwt.hs256_secret = Some(secret.into_bytes());
    }
    if let Some(path) = &config.jwt_jwks_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading JWKS file {}", path.display()))?;
        jwt.load_jwks(&text).with_context(|| format!("JWKS file {}", path.display()))?;
    }
    if jwt.enabled() {
        jwt.issuer = config.jwt_issuer.clone().context("JWTs are enabled: set --jwt-issuer (PLED_JWT_ISSUER)")?;
        jwt.audience =
            config.jwt_audience.clone().context("JWTs are enabled: set --jwt-audience (PLED_JWT_AUDIENCE)")?;
    }
    Ok(jwt)
}

/// Builds the shared state over an open store.
pub fn state(store: Store, config: ServeConfig, jwt: JwtConfig) -> anyhow::Result<AppState> {
    // First: the services below take their metric handles from the installed recorder.
    let metrics = metrics_handle();
    let hub = Arc::new(Hub::default());
    let ai = config.ai_endpoint.clone().map(|url| {
        Arc::new(crate::ai::HttpProvider::new(url, std::env::var("PLED_AI_API_KEY").ok()))
            as Arc<dyn crate::ai::AiProvider>
    });
    let lanes = Lanes::new(store.clone(), hub.clone(), ai);
    let commit =
        pled_committer::CommitConfig { interval: config.commit_interval, max_round_entries: config.max_round_entries };
    let anchoring = config.chain != crate::config::ChainMode::Off;
    let committer = pled_committer::Committer::open(store.clone(), commit, anchoring)
        .map_err(|e| anyhow::anyhow!("opening the committer: {e}"))?;
    let runner = crate::actions::Runner::new(
        store.clone(),
        lanes.clone(),
        crate::actions::types::Registry::builtin(),
        crate::actions::RunnerConfig::from_config(&config),
    );
    let timers = crate::timers::TimerService::new(store.clone(), lanes.clone());
    let limits = crate::ratelimit::OrgLimits::new(config.org_rate_limit, config.org_burst, &config.org_limits);
    let token_max_lifetime = std::sync::RwLock::new(config.token_max_lifetime);
    Ok(AppState::new(Services {
        runner,
        timers,
        runs: crate::runs::Runs::new(config.replay_concurrency),
        store,
        jwt: Arc::new(jwt),
        config: Arc::new(config),
        metrics,
        locks: Arc::new(KeyLocks::default()),
        records: Default::default(),
        lanes,
        hub,
        committer,
        tokens: Arc::default(),
        limits,
        token_max_lifetime,
    }))
}

/// How `pled serve` anchors: a chain config for the publisher, and the dev chain to stop.
async fn chain_setup(
    config: &mut ServeConfig,
    store: &Store,
) -> anyhow::Result<(Option<ChainConfig>, Option<DevChain>)> {
    if config.chain == ChainMode::Off {
        tracing::info!("chain off: rounds and proofs stay local (anchor status unanchored)");
        return Ok((None, None));
    }
    let (signer, dev) = match &config.rpc_url {
        Some(_) => {
            let key = std::env::var("PLED_SIGNER_KEY")
                .context("--rpc-url needs the signer key in PLED_SIGNER_KEY (never a flag or a file)")?;
            (key.trim().parse::<PrivateKeySigner>().context("PLED_SIGNER_KEY is not a private key")?, None)
        }
        None => {
            let dev = DevChain::start(&config.data_dir, store).await?;
            tracing::info!(
                rpc_url = %dev.rpc_url, chain_id = dev.deployed.chain_id, registry = %dev.deployed.registry, token = %dev.deployed.token,
                "started a local anvil (dev default; state in the data dir) and anchoring there with its first dev key"
            );
            config.rpc_url = Some(dev.rpc_url.clone());
            config.registry = Some(dev.deployed.registry.to_string());
            config.token_contract = Some(dev.deployed.token.to_string());
            (crate::devchain::DEV_KEY.parse()?, Some(dev))
        }
    };
    let rpc_url = config.rpc_url.clone().unwrap_or_default();
    let registry = config
        .registry
        .as_deref()
        .context("--rpc-url needs --registry (deploy with `pled chain deploy --rpc-url URL`)")?
        .parse()
        .context("--registry is not an address")?;
    let token =
        config.token_contract.as_deref().map(str::parse).transpose().context("--token-contract is not an address")?;
    tracing::info!(%rpc_url, %registry, signer = %signer.address(), confirmations = config.confirmations, "anchoring roots on chain");
    config.signer_address = Some(signer.address().to_string());
    let cfg = ChainConfig {
        rpc_url,
        registry,
        token,
        signer,
        confirmations: config.confirmations,
        poll: Duration::from_millis(500),
        stuck_after: Duration::from_secs(30),
    };
    Ok((Some(cfg), dev))
}

/// How the service opens its store.
pub fn store_options(config: &ServeConfig) -> StoreOptions {
    StoreOptions { idempotency_ttl: Some(config.idempotency_ttl), ..StoreOptions::default() }
}

/// Reads the configuration again (for `SIGHUP`): the file, under the flags and environment of
/// the start.
pub type Reload = Box<dyn Fn() -> anyhow::Result<ServeConfig> + Send + Sync>;

/// Applies what a running service can change from `new`: the per-org rate limits
/// (`org_rate_limit`, `org_burst`, `org_limits`) and `token_max_lifetime`. Returns whether
/// `new` also changes other settings against `loaded`, the configuration as loaded at start;
/// those take effect only at the next start.
pub fn reconfigure(state: &AppState, loaded: &ServeConfig, new: &ServeConfig) -> bool {
    state.limits.set(new.org_rate_limit, new.org_burst, &new.org_limits);
    *state.token_max_lifetime.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new.token_max_lifetime;
    let mut effective = loaded.clone();
    effective.org_rate_limit = new.org_rate_limit;
    effective.org_burst = new.org_burst;
    effective.org_limits = new.org_limits.clone();
    effective.token_max_lifetime = new.token_max_lifetime;
    effective != *new
}

/// On every `SIGHUP`, reads the configuration again and applies what can change while the
/// service runs ([`reconfigure`]); a configuration that does not load changes nothing.
async fn reload_on_sighup(
    state: AppState,
    loaded: ServeConfig,
    reload: Reload,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: the configuration cannot be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {}
            _ = stopped.changed() => return,
        }
        match reload() {
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "configuration not reloaded: the running settings stay")
            }
            Ok(new) => {
                let others = reconfigure(&state, &loaded, &new);
                tracing::info!(
                    org_rate_limit = new.org_rate_limit,
                    org_burst = new.org_burst,
                    org_limits = new.org_limits.len(),
                    token_max_lifetime_s = new.token_max_lifetime.map(|d| d.as_secs()),
                    "configuration reloaded: rate limits and the token lifetime limit apply now"
                );
                if others {
                    tracing::warn!("the configuration also changes settings that apply only at the next start");
                }
            }
        }
    }
}

/// Runs the service until `shutdown` resolves; `reload` re-reads the configuration on `SIGHUP`.
pub async fn run(
    mut config: ServeConfig,
    reload: Option<Reload>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let jwt = jwt_config(&config)?;
    let store = Store::open(&config.data_dir, store_options(&config))
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    if !crate::repo::tokens::any(&store).map_err(|e| anyhow::anyhow!("{e}"))? && !jwt.enabled() {
        tracing::warn!(
            "no access tokens exist yet. Stop the server and create the first admin token with: \
             pled token create --data-dir {} --org <your-org> --role admin --name bootstrap \
             (or set PLED_JWT_SECRET, --jwt-issuer and --jwt-audience to accept JWTs)",
            config.data_dir.display()
        );
    }
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let loaded = config.clone();
    let (chain, dev) = chain_setup(&mut config, &store).await?;
    let app_state = state(store.clone(), config.clone(), jwt)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let rounds = tokio::spawn(app_state.committer.clone().run(stopped.clone()));
    // Jobs and timers left by an earlier process are in the store's queue: both pick them up.
    let runner = tokio::spawn(app_state.runner.clone().run(stopped.clone()));
    let timers = tokio::spawn(app_state.timers.clone().run(stopped.clone()));
    let schedules = tokio::spawn(crate::schedules::ScheduleService::new(app_state.clone()).run(stopped.clone()));
    let upkeep = tokio::spawn(metrics_upkeep(app_state.metrics.clone(), stopped.clone()));
    tokio::spawn(expire_legacy_records(store.clone()));
    if let Some(reload) = reload {
        tokio::spawn(reload_on_sighup(app_state.clone(), loaded, reload, stopped.clone()));
    }
    let token_uses = tokio::spawn(app_state.tokens.clone().record_uses(store.clone(), stopped.clone()));
    let backups = config.backup_dir.clone().map(|dir| {
        tracing::info!(dir = %dir.display(), every_s = config.backup_every.as_secs(), keep = config.backup_keep, "backing the store up");
        tokio::spawn(crate::backups::run(store.clone(), dir, config.backup_every, config.backup_keep, stopped.clone()))
    });
    let publisher = match chain {
        Some(cfg) => {
            let (c, l) = (app_state.committer.clone(), app_state.lanes.clone());
            tokio::spawn(crate::mints::run(c, l, store.clone(), stopped.clone()));
            Some(tokio::spawn(Publisher::new(app_state.committer.clone(), cfg)?.run(stopped)))
        }
        None => None,
    };
    // Streams, long-polls and replays hold their requests open: once the signal comes they
    // end (the hub closes), so the graceful shutdown does not wait on their clients.
    let hub = app_state.hub.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let app = crate::app(app_state);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "listening on http://{addr}");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("serving")?;
    tracing::info!("stopped accepting requests; closing the last round and committing outstanding writes");
    let _ = stop.send(true);
    let _ = rounds.await;
    let _ = timers.await;
    let _ = schedules.await;
    let _ = upkeep.await;
    let _ = token_uses.await;
    if let Some(b) = backups {
        let _ = b.await;
    }
    let _ = runner.await;
    if let Some(p) = publisher {
        let _ = p.await;
    }
    if let Some(dev) = dev {
        dev.stop().await;
    }
    drop(store);
    tracing::info!("services stopped; closing the store");
    Ok(())
}

/// Gives idempotency records of versions before they expired the TTL from now, once per store
/// ([`Store::expire_legacy_records`]), in the background.
async fn expire_legacy_records(store: Store) {
    match store.expire_legacy_records().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "idempotency records from before expiry now expire after the TTL"),
        Err(e) => {
            tracing::warn!(error = %e, "could not give older idempotency records an expiry; the next start tries again")
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}
