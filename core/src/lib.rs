//! PLED's pure core: the ledger entry and its canonical bytes, the BLAKE3 hash chain and
//! its verifier, typed ids. Everything an auditor must re-implement lives here, and none of
//! it does I/O.
//!
//! ```
//! use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, verify_chain};
//!
//! let execution = ExecutionId::from_u128(1);
//! let at = RecordedAt::parse("2026-11-22T01:48:30.000000Z").unwrap();
//! let mut head = ChainHead::genesis(execution);
//! let mut chain = Vec::new();
//! for n in 0..3 {
//!     let body = Body::from_json_str(&format!(r#"{{"n":{n}}}"#)).unwrap();
//!     let entry = head.next_entry(Kind::new("demo").unwrap(), at.clone(), body);
//!     head.advance(&entry);
//!     chain.push(entry);
//! }
//! assert_eq!(verify_chain(execution, &chain).unwrap().seq.get(), 3);
//! ```

mod body;
mod chain;
pub mod de;
mod entry;
mod ids;
pub mod jcs;
mod keccak;
pub mod merkle;
pub mod proof;
mod time;

pub use body::{Body, BodyError, MAX_SAFE_INTEGER, Member};
pub use chain::{ChainError, ChainHead, ChainProblem, ChainVerifier, verify_chain};
pub use entry::{ENTRY_DOMAIN_TAG, Entry, EntryError, Kind, SealedEntry};
pub use ids::{EntryHash, ExecutionId, IdError, OrgId, Seq};
pub use time::{RecordedAt, TimeError, unix_micros_now, unix_millis_now};
