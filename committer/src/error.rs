//! The committer's one error type.

use pled_store::StoreError;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such entry, round or commitment.
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be honoured (bad range).
    #[error("{0}")]
    Invalid(String),
    /// A stored record does not decode, or disagrees with the ledger.
    #[error("corrupt commitment data: {0}")]
    Corrupt(String),
}
