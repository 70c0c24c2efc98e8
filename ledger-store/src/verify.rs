//! Walks every chain in a store and checks it with [`pled_core::ChainVerifier`]: the first
//! bad entry is named with its execution, seq and what is wrong. Heads and entries are walked
//! together in execution-id order, so orphaned entries (no head) and missing entries (head
//! beyond the last entry) are found too, in constant memory.

use std::iter::Peekable;

use pled_core::{ChainError, ChainHead, ChainProblem, ChainVerifier, EntryHash, ExecutionId, SealedEntry, Seq};
use rocksdb::{DB, DBIteratorWithThreadMode, IteratorMode};

use crate::codec::{self, StoredHead};
use crate::{Store, StoreError, cf};

/// How far a walk has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Chains fully verified.
    pub executions: u64,
    /// Entries verified.
    pub entries: u64,
}

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A chain is broken; this is its first bad entry.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Report progress every this many entries.
pub const PROGRESS_EVERY: u64 = 100_000;

type Iter<'a> = Peekable<DBIteratorWithThreadMode<'a, DB>>;

/// Verifies every chain. `progress` is called every [`PROGRESS_EVERY`] entries and at the
/// end. Returns the totals when every chain verifies.
pub fn verify_store(store: &Store, mut progress: impl FnMut(Progress)) -> Result<Progress, VerifyError> {
    let db = store.db();
    let mut heads: Iter<'_> = db.iterator_cf(cf(db, cf::HEADS), IteratorMode::Start).peekable();
    let mut entries: Iter<'_> = db.iterator_cf(cf(db, cf::ENTRIES), IteratorMode::Start).peekable();
    let mut done = Progress::default();
    loop {
        let next_head = peek_id(&mut heads, 16)?;
        let next_entry = peek_id(&mut entries, 24)?;
        let id = match (next_head, next_entry) {
            (None, None) => break,
            (Some(h), None) => h,
            (None, Some(e)) => e,
            (Some(h), Some(e)) => h.min(e),
        };
        let recorded = if next_head == Some(id) { Some(take_head(&mut heads, id)?) } else { None };
        verify_one(id, recorded, &mut entries, &mut done, &mut progress)?;
        done.executions += 1;
    }
    progress(done);
    Ok(done)
}

/// Verifies one execution's chain against its recorded head.
pub fn verify_execution(store: &Store, id: ExecutionId) -> Result<ChainHead, VerifyError> {
    let mut v = ChainVerifier::new(id);
    for item in store.iter_entries(id, Seq::FIRST) {
        match item {
            Ok(e) => v.push(&e)?,
            Err(StoreError::Corrupt { detail, .. }) => {
                return Err(v.corrupt(v.head().seq.next(), detail).into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let recorded = store.head(id)?.map(|h| (h.chain.seq, h.chain.hash));
    Ok(v.finish(recorded)?)
}

fn verify_one(
    id: ExecutionId,
    recorded: Option<(Seq, EntryHash)>,
    entries: &mut Iter<'_>,
    done: &mut Progress,
    progress: &mut impl FnMut(Progress),
) -> Result<(), VerifyError> {
    let mut v = ChainVerifier::new(id);
    let mut chunk: Vec<RawEntry> = Vec::with_capacity(CHUNK);
    loop {
        chunk.clear();
        while chunk.len() < CHUNK && peek_id(entries, 24)? == Some(id) {
            let Some(Ok(kv)) = entries.next() else { unreachable!("peeked an entry") };
            chunk.push(kv);
        }
        if chunk.is_empty() {
            break;
        }
        for item in decode_and_hash(id, &chunk) {
            let (e, computed) = item.map_err(|(seq, detail)| {
                let at = if seq == Seq::ZERO { v.head().seq.next() } else { seq };
                v.corrupt(at, detail)
            })?;
            v.push_with_hash(&e, computed)?;
            if recorded.is_none() {
                return Err(ChainError { execution_id: id, seq: e.seq(), problem: ChainProblem::MissingHead }.into());
            }
            done.entries += 1;
            if done.entries.is_multiple_of(PROGRESS_EVERY) {
                progress(*done);
            }
        }
    }
    v.finish(recorded)?;
    Ok(())
}

/// Entries are read in chunks of this many records; each chunk is decoded and hashed in parallel.
const CHUNK: usize = 8192;

type Decoded = Result<(SealedEntry, EntryHash), (Seq, String)>;

/// A stored record's key and value, as RocksDB returns them (a group of entries).
type RawEntry = (Box<[u8]>, Box<[u8]>);

/// Decodes and hashes a chunk of raw records on all cores (hashes are independent; links are
/// checked afterwards, in order).
fn decode_and_hash(id: ExecutionId, chunk: &[RawEntry]) -> Vec<Decoded> {
    let decode = |part: &[RawEntry]| -> Vec<Decoded> {
        let mut out = Vec::with_capacity(part.len());
        for (k, bytes) in part {
            let Some((_, first)) = codec::split_entry_key(k) else {
                out.push(Err((Seq::ZERO, format!("entry key of {} bytes", k.len()))));
                continue;
            };
            let mut group = codec::Group::new(first, bytes);
            while let Some(item) = group.next_entry(id) {
                out.push(item.map(|e| {
                    let h = e.entry().compute_hash();
                    (e, h)
                }));
            }
        }
        out
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || chunk.len() < 256 {
        return decode(chunk);
    }
    let per = chunk.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = chunk.chunks(per).map(|part| s.spawn(move || decode(part))).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// The execution id of the next key, or `None` at the end. Keys shorter than an id are
/// reported as corruption.
fn peek_id(it: &mut Iter<'_>, key_len: usize) -> Result<Option<ExecutionId>, StoreError> {
    match it.peek() {
        None => Ok(None),
        Some(Err(e)) => Err(StoreError::Rocks(e.clone().into_string())),
        Some(Ok((k, _))) => match k.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(b) => Ok(Some(ExecutionId::from_bytes(b))),
            None => Err(StoreError::Corrupt {
                what: "key".into(),
                detail: format!("{} bytes, expected {key_len}", k.len()),
            }),
        },
    }
}

fn take_head(heads: &mut Iter<'_>, id: ExecutionId) -> Result<(Seq, EntryHash), VerifyError> {
    let Some(Ok((k, v))) = heads.next() else { unreachable!("peeked a head") };
    if k.len() != 16 {
        return Err(
            StoreError::Corrupt { what: format!("head key of {id}"), detail: format!("{} bytes", k.len()) }.into()
        );
    }
    let h: StoredHead = codec::decode(|| format!("head of execution {id}"), &v).map_err(|e| {
        VerifyError::Chain(ChainError {
            execution_id: id,
            seq: Seq::ZERO,
            problem: ChainProblem::Corrupt { detail: e.to_string() },
        })
    })?;
    Ok((Seq::new(h.seq), EntryHash::from_bytes(h.hash)))
}
