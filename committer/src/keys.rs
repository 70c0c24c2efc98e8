//! Keys of the `commitments` table (one-byte prefixes, big-endian numbers so keys sort as the
//! numbers do):
//!
//! - `r | round`: the round record (JSON)
//! - `x | execution | first seq`: `round | leaf offset | last seq` for the entries
//!   `first..=last` of one append (one key per append, not per entry)
//! - `c | execution | commitment`: a per-execution commitment (JSON)
//! - `o | n`: the n-th anchoring outbox item (JSON); `O`: the last n used
//! - `t | n`: the transaction state of outbox item n (JSON)
//! - `m | execution | seq`: an on-chain mint for a sink entry (JSON)
//! - `M | execution | seq`: that mint is not on its execution's ledger yet (empty value)

use pled_core::{ExecutionId, Seq};

pub(crate) const ROUND: u8 = b'r';
pub(crate) const INDEX: u8 = b'x';
pub(crate) const COMMITMENT: u8 = b'c';
pub(crate) const OUTBOX: u8 = b'o';
pub(crate) const OUTBOX_COUNTER: u8 = b'O';
pub(crate) const TX_STATE: u8 = b't';
pub(crate) const MINT: u8 = b'm';
pub(crate) const MINT_UNRECORDED: u8 = b'M';

pub(crate) fn round(id: u64) -> Vec<u8> {
    [&[ROUND][..], &id.to_be_bytes()].concat()
}

pub(crate) fn index(execution: ExecutionId, first: Seq) -> Vec<u8> {
    [&[INDEX][..], execution.as_bytes(), &first.get().to_be_bytes()].concat()
}

pub(crate) fn index_prefix(execution: ExecutionId) -> Vec<u8> {
    [&[INDEX][..], execution.as_bytes()].concat()
}

pub(crate) fn commitment(execution: ExecutionId, id: u64) -> Vec<u8> {
    [&[COMMITMENT][..], execution.as_bytes(), &id.to_be_bytes()].concat()
}

pub(crate) fn commitment_prefix(execution: ExecutionId) -> Vec<u8> {
    [&[COMMITMENT][..], execution.as_bytes()].concat()
}

/// `round | leaf offset | last seq`.
pub(crate) fn index_value(round: u64, offset: u64, last: Seq) -> Vec<u8> {
    [round.to_be_bytes(), offset.to_be_bytes(), last.get().to_be_bytes()].concat()
}

pub(crate) fn parse_index_value(v: &[u8]) -> Option<(u64, u64, Seq)> {
    let n = |i: usize| v.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    (v.len() == 24).then_some(())?;
    Some((n(0)?, n(1)?, Seq::new(n(2)?)))
}

pub(crate) fn parse_seq_suffix(key: &[u8]) -> Option<Seq> {
    key.get(key.len().checked_sub(8)?..)?.try_into().ok().map(u64::from_be_bytes).map(Seq::new)
}

pub(crate) fn outbox(n: u64) -> Vec<u8> {
    [&[OUTBOX][..], &n.to_be_bytes()].concat()
}

pub(crate) fn tx_state(n: u64) -> Vec<u8> {
    [&[TX_STATE][..], &n.to_be_bytes()].concat()
}

pub(crate) fn mint(execution: ExecutionId, seq: u64) -> Vec<u8> {
    [&[MINT][..], execution.as_bytes(), &seq.to_be_bytes()].concat()
}

pub(crate) fn mint_unrecorded(execution: ExecutionId, seq: u64) -> Vec<u8> {
    [&[MINT_UNRECORDED][..], execution.as_bytes(), &seq.to_be_bytes()].concat()
}
