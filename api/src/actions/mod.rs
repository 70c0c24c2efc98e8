//! Actions: the side effects templates schedule (webhooks, events to other executions), run
//! at least once and recorded on the ledger exactly once.
//!
//! - [`jobs`]: the durable job records and the run queue (both in the store).
//! - [`types`]: the registry of action types (`webhook`, `emit_event`), each with its input
//!   schema; adding a type is one file and one line in [`types::Registry::builtin`].
//! - [`runner`]: runs due jobs with a concurrency limit and a per-attempt timeout, retries
//!   transient failures with exponential backoff and jitter, parks exhausted jobs as `dead`,
//!   and records every attempt and the result through the execution's lane.
//! - [`signing`]: the per-org secret that signs outbound webhooks.

pub mod jobs;
pub mod runner;
pub mod signing;
pub mod types;

pub use runner::{Runner, RunnerConfig};

/// The ledger kinds of actions that the service writes (besides the engine's
/// `action.scheduled`).
pub mod kinds {
    /// One attempt of a job ran (its outcome, status, error, duration).
    pub const ACTION_ATTEMPTED: &str = "action.attempted";
    /// The job succeeded (its response).
    pub const ACTION_SUCCEEDED: &str = "action.succeeded";
    /// The job failed in a way retrying cannot fix.
    pub const ACTION_FAILED: &str = "action.failed";
    /// The job used up its attempts (dead-letter).
    pub const ACTION_DEAD: &str = "action.dead";
    /// An operator re-ran a dead or failed job.
    pub const ACTION_RERUN: &str = "action.rerun";
    /// An operator ran an action on demand (its job follows).
    pub const ACTION_REQUESTED: &str = "action.requested";

    /// Every kind above.
    pub const ALL: &[&str] =
        &[ACTION_ATTEMPTED, ACTION_SUCCEEDED, ACTION_FAILED, ACTION_DEAD, ACTION_RERUN, ACTION_REQUESTED];
}

/// Kinds whose write puts a job in the run queue (the runner is woken after it).
pub const QUEUEING_KINDS: &[&str] =
    &[pled_engine::kinds::ACTION_SCHEDULED, kinds::ACTION_RERUN, kinds::ACTION_REQUESTED, kinds::ACTION_ATTEMPTED];

/// The event types a job's result re-enters the pipeline as (only for templates with a rule
/// or transition on them).
pub mod events {
    /// The job succeeded: `{jobId, actionId, type, attempts, response}`.
    pub const SUCCEEDED: &str = "action.succeeded";
    /// The job failed or died: `{jobId, actionId, type, attempts, error, status, dead}`.
    pub const FAILED: &str = "action.failed";
}
