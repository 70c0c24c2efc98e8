//! PLED's committer: commit rounds, Merkle roots and inclusion proofs.
//!
//! A **round** covers every entry appended since the previous round, across all executions, in
//! the order appends became durable (the store's feed), and within one append in seq order. It
//! closes every commit interval or once `max_round_entries` are pending. Its Merkle tree (leaves
//! and inner nodes as in `pled_core::merkle`) gives one root per round;
//! one transaction anchors it however many executions it covers.
//!
//! Closing a round is two writes: the **plan** (round id and feed range) and then the
//! **build** (leaves, the entry index, the root). A crash between them leaves a plan that the
//! next start rebuilds over the same range, so a round has exactly one root. Building reads
//! the store and never blocks ingest.
//!
//! A **commitment** is the root over one execution's seq range, made on demand.

pub mod chain;
mod commitments;
mod error;
mod keys;
mod mints;
mod outbox;
mod rounds;

pub use commitments::CommitmentRecord;
pub use error::CommitError;
pub use mints::MintRecord;
pub use outbox::{Item, Target, TxState};
pub use rounds::{
    Anchor, AnchorStatus, CommitConfig, Committer, DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_ROUND_ENTRIES, ProofAnswer,
    RoundRecord,
};
