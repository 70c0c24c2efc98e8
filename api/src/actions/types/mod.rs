//! The action types: what a job of each type does, and the JSON schema of its input.
//!
//! A type implements [`ActionType`]; [`Registry::builtin`] lists them. A type's `run` does
//! the side effect once and says how it went ([`Outcome`]); the runner owns timeouts,
//! retries, recording and the result event.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use pled_store::Store;
use serde_json::Value;

use super::jobs::JobRecord;
use crate::lanes::Lanes;

pub mod emit_event;
pub mod webhook;

/// What one attempt needs.
pub struct Context<'a> {
    /// The job (its id is the idempotency key).
    pub job: &'a JobRecord,
    /// The attempt number (1, 2, …).
    pub attempt: u32,
    /// The store.
    pub store: &'a Store,
    /// The lanes (for types that post events).
    pub lanes: &'a Arc<Lanes>,
    /// A shared HTTP client.
    pub http: &'a reqwest::Client,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done.
    Succeeded {
        /// What the side effect answered (recorded on the ledger, passed to the result event).
        response: Value,
        /// HTTP status, if any.
        status: Option<u16>,
    },
    /// A transient failure (network error, time-out, 5xx, 408, 429): try again later.
    Retry {
        /// What went wrong.
        error: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// When the other side asked us to come back (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// A failure retrying cannot fix (other 4xx, bad input, unknown target).
    Failed {
        /// What went wrong.
        error: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// What the other side answered.
        response: Value,
    },
}

impl Outcome {
    /// A permanent failure without a response.
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome::Failed { error: error.into(), status: None, response: Value::Null }
    }

    /// A transient failure without a status.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Retry { error: error.into(), status: None, retry_after: None }
    }
}

/// An action type.
pub trait ActionType: Send + Sync {
    /// Its name (the template action's `type`).
    fn name(&self) -> &'static str;
    /// One sentence on what it does.
    fn description(&self) -> &'static str;
    /// The JSON schema of its input (after `=` expressions are evaluated).
    fn input_schema(&self) -> Value;
    /// Checks an input; the error says what is wrong. A job whose input fails this check
    /// fails without an attempt at the side effect.
    fn check(&self, input: &Value) -> Result<(), String>;
    /// Does the side effect once.
    fn run<'a>(&'a self, cx: Context<'a>) -> BoxFuture<'a, Outcome>;
}

/// The action types by name.
#[derive(Clone)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn ActionType>>,
}

impl Registry {
    /// The built-in types: `webhook`, `emit_event`.
    pub fn builtin() -> Self {
        let mut r = Self { types: BTreeMap::new() };
        r.add(Arc::new(webhook::Webhook));
        r.add(Arc::new(emit_event::EmitEvent));
        r
    }

    /// Adds (or replaces) a type.
    pub fn add(&mut self, t: Arc<dyn ActionType>) {
        self.types.insert(t.name(), t);
    }

    /// A type by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ActionType>> {
        self.types.get(name)
    }

    /// Every type, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ActionType>> {
        self.types.values()
    }
}

/// A string member of an input object.
pub(crate) fn text<'a>(input: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("/{name} must be a string")),
    }
}

/// Refuses members not in `known`.
pub(crate) fn only(input: &Value, known: &[&str]) -> Result<(), String> {
    let obj = input.as_object().ok_or("the input must be a JSON object")?;
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown member /{k} (known: {})", known.join(", "))),
        None => Ok(()),
    }
}
