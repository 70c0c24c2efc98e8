//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready)).routes(routes!(metrics))
}

/// Health answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`.
    status: &'static str,
    /// The server's version.
    version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub(crate) async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Readiness: the store answers reads and accepts writes.
#[utoipa::path(get, path = "/health/ready", tag = "operations", security(()),
    responses((status = 200, body = Health), (status = 503, description = "store unavailable", body = crate::error::Problem)))]
pub(crate) async fn ready(State(s): State<AppState>) -> ApiResult<axum::Json<Health>> {
    s.store.check().map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
    if let Some(cause) = s.store.poisoned() {
        return Err(ApiError::Unavailable(format!("store refuses writes: {cause}")));
    }
    Ok(axum::Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let stats = s.store.writer_stats();
    use std::sync::atomic::Ordering::Relaxed;
    metrics::gauge!("pled_store_synced_groups").set(stats.groups.load(Relaxed) as f64);
    metrics::gauge!("pled_store_committed_sets").set(stats.sets.load(Relaxed) as f64);
    metrics::gauge!("pled_store_committed_entries").set(stats.entries.load(Relaxed) as f64);
    match s.store.sizes() {
        Ok(sizes) => {
            for t in sizes {
                metrics::gauge!("pled_store_disk_bytes", "table" => t.name).set(t.disk_bytes as f64);
                metrics::gauge!("pled_store_memtable_bytes", "table" => t.name).set(t.memtable_bytes as f64);
                metrics::gauge!("pled_store_keys", "table" => t.name).set(t.keys as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the store's sizes for /metrics"),
    }
    metrics::gauge!("pled_replay_slots_busy").set(s.runs.busy() as f64);
    metrics::gauge!("pled_replay_runs_queued").set(s.runs.queued() as f64);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
