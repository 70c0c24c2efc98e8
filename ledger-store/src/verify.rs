//! Walks every chain in a store and checks it with [`pled_core::ChainVerifier`]: the first
//! bad entry is named with its execution, seq and what is wrong. Heads and entries are walked
//! together in execution-id order, so orphaned entries (no head) and missing entries (head
//! beyond the last entry) are found too, in constant memory.

use std::iter::Peekable;
use std::sync::mpsc::{Receiver, SyncSender};

use pled_core::{ChainError, ChainHead, ChainProblem, ChainVerifier, EntryHash, ExecutionId, SealedEntry, Seq};
use rocksdb::{DB, DBIteratorWithThreadMode, IteratorMode, ReadOptions};

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
///
/// Two stages overlap: a reading thread copies the entry records out of RocksDB in key order
/// (batches of about [`BATCH_BYTES`]), while this thread decodes and hashes the previous batch
/// on all cores and links its entries, walking the heads alongside.
pub fn verify_store(store: &Store, progress: impl FnMut(Progress)) -> Result<Progress, VerifyError> {
    walk(store, BATCH_BYTES, progress)
}

/// Entry records are read in batches of about this many bytes (a batch ends with the record
/// that reaches it): large enough that spreading a batch over the cores pays, small enough
/// that the reader and the hashers overlap from the start.
const BATCH_BYTES: usize = 4 << 20;

fn walk(store: &Store, batch_bytes: usize, progress: impl FnMut(Progress)) -> Result<Progress, VerifyError> {
    let db = store.db();
    let mut walk = Walk {
        heads: db.iterator_cf(cf(db, cf::HEADS), IteratorMode::Start).peekable(),
        open: None,
        done: Progress::default(),
        progress,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Per thread, the entries it decoded from the batch at hand (kept: their memory is reused).
    let mut parts: Vec<Vec<(ExecutionId, Decoded)>> = (0..threads).map(|_| Vec::new()).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        // Batches go back to the reader to be filled again (fresh 4 MB buffers cost more to
        // map and zero than to hash).
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("pled-verify-read".into())
            .spawn_scoped(scope, move || read_records(db, batch_bytes, &tx, &back_rx))
            .map_err(|e| StoreError::Rocks(format!("cannot start the reading thread: {e}")))?;
        // Returning early drops `rx`: the reader's next send fails and it stops.
        for batch in rx {
            let batch = batch?;
            decode_and_hash(&batch, &mut parts)?;
            let _ = back_tx.send(batch);
            for (id, item) in parts.iter_mut().flat_map(|part| part.drain(..)) {
                walk.push(id, item)?;
            }
        }
        walk.end()
    })
}

/// One execution's chain under verification and the head recorded for it.
struct Open {
    id: ExecutionId,
    verifier: ChainVerifier,
    recorded: Option<(Seq, EntryHash)>,
}

/// The walk over heads and decoded entries, both in execution-id order.
struct Walk<'a, P> {
    heads: Iter<'a>,
    /// The chain whose entries are being linked.
    open: Option<Open>,
    done: Progress,
    progress: P,
}

impl<P: FnMut(Progress)> Walk<'_, P> {
    /// Links the next decoded entry (or reports why it could not be decoded).
    fn push(&mut self, id: ExecutionId, item: Decoded) -> Result<(), VerifyError> {
        if self.open.as_ref().is_none_or(|open| open.id != id) {
            self.start(id)?;
        }
        let Some(Open { verifier: v, recorded, .. }) = &mut self.open else { unreachable!("started above") };
        let (e, computed) = item.map_err(|(seq, detail)| {
            let at = if seq == Seq::ZERO { v.head().seq.next() } else { seq };
            v.corrupt(at, detail)
        })?;
        v.push_with_hash(&e, computed)?;
        if recorded.is_none() {
            return Err(ChainError { execution_id: id, seq: e.seq(), problem: ChainProblem::MissingHead }.into());
        }
        self.done.entries += 1;
        if self.done.entries.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(self.done);
        }
        Ok(())
    }

    /// Closes the open chain, checks the heads of executions before `id` (which have no
    /// entries), and opens `id`'s chain.
    fn start(&mut self, id: ExecutionId) -> Result<(), VerifyError> {
        self.close()?;
        while let Some(before) = peek_head(&mut self.heads)?.filter(|h| *h < id) {
            self.close_head_only(before)?;
        }
        let recorded = match peek_head(&mut self.heads)? {
            Some(h) if h == id => Some(take_head(&mut self.heads, id)?),
            _ => None,
        };
        self.open = Some(Open { id, verifier: ChainVerifier::new(id), recorded });
        Ok(())
    }

    /// Checks the open chain's end against its recorded head.
    fn close(&mut self) -> Result<(), VerifyError> {
        if let Some(Open { verifier, recorded, .. }) = self.open.take() {
            verifier.finish(recorded)?;
            self.done.executions += 1;
        }
        Ok(())
    }

    /// Checks the next head, of an execution without entries.
    fn close_head_only(&mut self, id: ExecutionId) -> Result<(), VerifyError> {
        let recorded = Some(take_head(&mut self.heads, id)?);
        self.open = Some(Open { id, verifier: ChainVerifier::new(id), recorded });
        self.close()
    }

    /// After the last entry: closes the open chain and checks the remaining heads.
    fn end(mut self) -> Result<Progress, VerifyError> {
        self.close()?;
        while let Some(id) = peek_head(&mut self.heads)? {
            self.close_head_only(id)?;
        }
        (self.progress)(self.done);
        Ok(self.done)
    }
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

type Decoded = Result<(SealedEntry, EntryHash), (Seq, String)>;

/// Entry records copied out of RocksDB, keys and values back to back in one buffer.
struct Batch {
    bytes: Vec<u8>,
    /// Per record: where its key ends (its value starts) and where its value ends.
    records: Vec<(usize, usize)>,
}

impl Batch {
    fn with_capacity(bytes: usize) -> Self {
        Self { bytes: Vec::with_capacity(bytes.min(BATCH_BYTES)), records: Vec::new() }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.records.push((key_end, self.bytes.len()));
    }

    /// The records `range`, as (key, value).
    fn records(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = (&[u8], &[u8])> {
        let start = |i: usize| if i == 0 { 0 } else { self.records[i - 1].1 };
        range.map(move |i| {
            let (key_end, end) = self.records[i];
            (&self.bytes[start(i)..key_end], &self.bytes[key_end..end])
        })
    }
}

/// Reads every entry record in key order and sends them in batches of about `batch_bytes`,
/// reusing the batches that come `back`. Stops at the end, at a read error (sent on), or when
/// the receiver is gone.
fn read_records(db: &DB, batch_bytes: usize, tx: &SyncSender<Result<Batch, StoreError>>, back: &Receiver<Batch>) {
    let mut ro = ReadOptions::default();
    // One pass over everything: keep the block cache for the blocks readers come back to.
    ro.fill_cache(false);
    ro.set_readahead_size(READAHEAD);
    let mut it = db.raw_iterator_cf_opt(cf(db, cf::ENTRIES), ro);
    it.seek_to_first();
    loop {
        let mut batch = back.try_recv().unwrap_or_else(|_| Batch::with_capacity(batch_bytes));
        batch.clear();
        while batch.bytes.len() < batch_bytes
            && let (Some(k), Some(v)) = (it.key(), it.value())
        {
            batch.push(k, v);
            it.next();
        }
        if let Err(e) = it.status() {
            let _ = tx.send(Err(StoreError::Rocks(e.into_string())));
            return;
        }
        if batch.records.is_empty() || tx.send(Ok(batch)).is_err() {
            return;
        }
    }
}

/// Sequential reads of SST files fetch this much ahead.
const READAHEAD: usize = 2 << 20;

/// Decodes and hashes a batch of records on all cores (hashes are independent; links are
/// checked afterwards, in order): one contiguous share of the records per part, each entry
/// with its execution. The parts are empty when it is called.
fn decode_and_hash(batch: &Batch, parts: &mut [Vec<(ExecutionId, Decoded)>]) -> Result<(), StoreError> {
    let decode = |range: std::ops::Range<usize>, out: &mut Vec<(ExecutionId, Decoded)>| -> Result<(), StoreError> {
        for (k, bytes) in batch.records(range) {
            let Some((id, first)) = codec::split_entry_key(k) else {
                out.push((key_id(k, 24)?, Err((Seq::ZERO, format!("entry key of {} bytes", k.len())))));
                continue;
            };
            let mut group = codec::Group::new(first, bytes);
            while let Some(item) = group.next_entry(id) {
                out.push((
                    id,
                    item.map(|e| {
                        let h = e.entry().compute_hash();
                        (e, h)
                    }),
                ));
            }
        }
        Ok(())
    };
    let n = batch.records.len();
    let Some((first, rest)) = parts.split_first_mut() else { return Ok(()) };
    if rest.is_empty() || n < 2 {
        return decode(0..n, first);
    }
    let per = n.div_ceil(rest.len() + 1);
    std::thread::scope(|s| {
        // This thread takes the first share; the others run meanwhile.
        let others: Vec<_> = rest
            .iter_mut()
            .enumerate()
            .map(|(i, out)| {
                let from = ((i + 1) * per).min(n);
                s.spawn(move || decode(from..(from + per).min(n), out))
            })
            .collect();
        decode(0..per.min(n), first)?;
        others.into_iter().try_for_each(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// The execution of the next head, or `None` at the end. A key shorter than an id is
/// reported as corruption.
fn peek_head(it: &mut Iter<'_>) -> Result<Option<ExecutionId>, StoreError> {
    match it.peek() {
        None => Ok(None),
        Some(Err(e)) => Err(StoreError::Rocks(e.clone().into_string())),
        Some(Ok((k, _))) => key_id(k, 16).map(Some),
    }
}

/// The execution id a key starts with; a key shorter than an id is corruption.
fn key_id(k: &[u8], key_len: usize) -> Result<ExecutionId, StoreError> {
    match k.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        Some(b) => Ok(ExecutionId::from_bytes(b)),
        None => {
            Err(StoreError::Corrupt { what: "key".into(), detail: format!("{} bytes, expected {key_len}", k.len()) })
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Append, StoreOptions, WriteSet};

    /// Batch sizes (bytes) that split the records anywhere: one record per batch, a few, tens,
    /// hundreds (across execution boundaries), everything in one batch.
    const BATCHES: [usize; 5] = [1, 500, 5_000, 50_000, 1 << 30];

    /// Executions 1, 2 and 3, each with 100 appends of 1-3 entries (199 entries in 100 records). Returns the
    /// store and, per execution, the first seq of each append.
    fn three_executions() -> (tempfile::TempDir, Store, Vec<(ExecutionId, Vec<u64>)>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { sync: false, ..Default::default() }).unwrap();
        let mut appends = Vec::new();
        for id in (1..=3).map(ExecutionId::from_u128) {
            let mut head = ChainHead::genesis(id);
            let mut firsts = Vec::new();
            for i in 0..100 {
                firsts.push(head.seq.get() + 1);
                let run = crate::tests::chain(&mut head, 1 + i % 3);
                store.write_blocking(WriteSet::new().append(Append::new(run).unwrap())).unwrap();
            }
            appends.push((id, firsts));
        }
        (dir, store, appends)
    }

    fn delete(store: &Store, table: &str, key: &[u8]) {
        store.db().delete_cf(cf(store.db(), table), key).unwrap();
    }

    #[test]
    fn batches_of_any_size_walk_alike() {
        let (_dir, store, _) = three_executions();
        for batch in BATCHES {
            let mut reported = Vec::new();
            let done = walk(&store, batch, |p| reported.push(p)).unwrap();
            assert_eq!(done, Progress { executions: 3, entries: 597 }, "batch {batch}");
            assert_eq!(reported, [done], "batch {batch}");
        }
    }

    #[test]
    fn a_changed_record_is_found_at_its_entry_whatever_the_batches() {
        let (_dir, store, appends) = three_executions();
        // The 51st append of execution 2 (record 151 of 300) holds 3 entries; change the
        // claimed hash of the last (the record's last byte).
        let (id, firsts) = &appends[1];
        let key = codec::entry_key(*id, Seq::new(firsts[50]));
        let mut value = store.db().get_cf(cf(store.db(), cf::ENTRIES), key).unwrap().unwrap();
        *value.last_mut().unwrap() ^= 1;
        store.db().put_cf(cf(store.db(), cf::ENTRIES), key, value).unwrap();
        for batch in BATCHES {
            let err = walk(&store, batch, |_| {}).unwrap_err();
            assert!(
                matches!(&err, VerifyError::Chain(e) if e.execution_id == *id
                    && e.seq == Seq::new(firsts[50] + 2)
                    && matches!(e.problem, ChainProblem::HashMismatch { .. })),
                "batch {batch}: {err}"
            );
        }
    }

    #[test]
    fn heads_without_entries_and_entries_without_heads_are_found_whatever_the_batches() {
        let (_dir, store, appends) = three_executions();
        let records = |(id, firsts): &(ExecutionId, Vec<u64>)| {
            firsts.iter().map(|&s| codec::entry_key(*id, Seq::new(s))).collect::<Vec<_>>()
        };
        // Execution 2, between the others, keeps its head but loses its entries.
        records(&appends[1]).iter().for_each(|k| delete(&store, cf::ENTRIES, k));
        for batch in BATCHES {
            let err = walk(&store, batch, |_| {}).unwrap_err();
            assert!(
                matches!(&err, VerifyError::Chain(e) if e.execution_id == appends[1].0
                    && e.seq == Seq::FIRST && e.problem == ChainProblem::Truncated { head: Seq::new(199) }),
                "batch {batch}: {err}"
            );
        }
        // Without its head too, execution 2 is gone; execution 3, the last, loses its entries.
        delete(&store, cf::HEADS, appends[1].0.as_bytes());
        records(&appends[2]).iter().for_each(|k| delete(&store, cf::ENTRIES, k));
        for batch in BATCHES {
            let err = walk(&store, batch, |_| {}).unwrap_err();
            assert!(
                matches!(&err, VerifyError::Chain(e) if e.execution_id == appends[2].0
                    && e.problem == ChainProblem::Truncated { head: Seq::new(199) }),
                "batch {batch}: {err}"
            );
        }
        // Execution 1 loses its head: its entries are orphans.
        delete(&store, cf::HEADS, appends[0].0.as_bytes());
        for batch in BATCHES {
            let err = walk(&store, batch, |_| {}).unwrap_err();
            assert!(
                matches!(&err, VerifyError::Chain(e) if e.execution_id == appends[0].0
                    && e.seq == Seq::FIRST && e.problem == ChainProblem::MissingHead),
                "batch {batch}: {err}"
            );
        }
    }
}
