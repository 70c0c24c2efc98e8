//! PLED's HTTP service: REST `/v1`, streams, auth and tenancy, problem+json errors,
//! idempotency, metrics and OpenAPI. The `pled` binary (CLI and `pled serve`) is built on it.
//!
//! [`app`] builds the router from an [`AppState`]; tests drive it without a port
//! (`tower::ServiceExt::oneshot`), and `pled serve` binds it to a socket.

pub mod actions;
pub mod ai;
pub mod apply;
pub mod auth;
pub mod backups;
pub mod config;
pub mod devchain;
pub mod error;
pub mod evidence;
pub mod extract;
pub mod hub;
pub mod idempotency;
pub mod lanes;
mod middleware;
pub mod mints;
pub mod openapi;
pub mod ratelimit;
pub mod replay;
pub mod repo;
mod routes;
pub mod runs;
pub mod schedules;
pub mod server;
pub mod state;
pub mod timers;

pub use routes::app;
pub use state::AppState;
