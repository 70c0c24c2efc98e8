//! The group-commit writer: one thread owns every write. It takes whatever write sets are
//! waiting, checks each append against the durable head (plus the earlier appends of the
//! same group), puts all accepted sets into one RocksDB `WriteBatch`, writes it with
//! `sync = true`, and only then answers the callers. Many callers share one fsync.
//!
//! A failed write or sync poisons the store: what reached the disk is unknown, so every
//! later write is refused until the process restarts and RocksDB recovers from its WAL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use pled_core::{EntryHash, ExecutionId, Seq};
use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::batch::{Appended, WriteSet};
use crate::codec::{self, StoredFeed, StoredHead};
use crate::{StoreError, cf};

/// A group stops growing at this many entries, so one sync never carries an unbounded
/// batch (memory, and the latency of the callers at the front of the group).
pub(crate) const MAX_GROUP_ENTRIES: usize = 50_000;
/// ... or at this many write sets.
pub(crate) const MAX_GROUP_SETS: usize = 4_096;
/// The writer remembers the durable chain tip of up to this many executions, so checking an
/// append against its head needs no RocksDB read; past it, the memory starts over.
const MAX_CACHED_TIPS: usize = 1 << 16;

pub(crate) type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

pub(crate) struct Request {
    pub(crate) set: WriteSet,
    pub(crate) reply: Reply,
}

/// State shared between the writer thread and the store handle.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) poisoned: OnceLock<String>,
    /// Fault-injection seam for tests: when set, the next group write fails with this
    /// message instead of reaching RocksDB.
    pub(crate) inject_failure: std::sync::Mutex<Option<String>>,
    pub(crate) stats: WriterStats,
    /// The last feed position that is durable (0 when the feed is empty).
    pub(crate) durable_feed: AtomicU64,
}

/// Counters of the writer's work, for benchmarks and metrics.
#[derive(Default, Debug)]
pub struct WriterStats {
    /// Synced writes (groups).
    pub groups: AtomicU64,
    /// Write sets committed.
    pub sets: AtomicU64,
    /// Entries committed.
    pub entries: AtomicU64,
}

pub(crate) struct Writer {
    db: Arc<DB>,
    shared: Arc<Shared>,
    sync: bool,
    next_feed: u64,
    /// Durable chain tips (seq, hash) by execution: the writer is the only one who writes
    /// heads, so what it committed last is the truth.
    tips: HashMap<ExecutionId, (u64, [u8; 32])>,
}

impl Writer {
    pub(crate) fn new(db: Arc<DB>, shared: Arc<Shared>, sync: bool) -> Result<Self, StoreError> {
        let next_feed = last_feed_position(&db)? + 1;
        shared.durable_feed.store(next_feed - 1, Ordering::Release);
        Ok(Self { db, shared, sync, next_feed, tips: HashMap::new() })
    }

    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut group = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut entries = first.set.entry_count();
            group.push(first);
            while entries < MAX_GROUP_ENTRIES && group.len() < MAX_GROUP_SETS {
                match rx.try_recv() {
                    Ok(r) => {
                        entries += r.set.entry_count();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
    }

    fn commit_group(&mut self, group: &mut Vec<Request>) {
        if let Some(cause) = self.shared.poisoned.get() {
            for r in group.drain(..) {
                let _ = r.reply.send(Err(StoreError::Poisoned(cause.clone())));
            }
            return;
        }
        let mut batch = WriteBatch::default();
        let mut heads: HashMap<ExecutionId, StoredHead> = HashMap::new();
        let mut accepted = Vec::with_capacity(group.len());
        let feed_before = self.next_feed;
        let mut entries = 0u64;
        for mut r in group.drain(..) {
            match self.stage(&mut r.set, &mut heads, &mut batch) {
                Ok(appended) => {
                    entries += r.set.entry_count() as u64;
                    accepted.push((r.reply, appended));
                }
                Err(e) => {
                    let _ = r.reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        let injected = self.shared.inject_failure.lock().map(|mut f| f.take()).unwrap_or(None);
        let result = match injected {
            Some(msg) => Err(msg),
            None => self.db.write_opt(batch, &opts).map_err(rocksdb::Error::into_string),
        };
        if let Err(cause) = result {
            tracing::error!(error = %cause, "ledger write failed; store refuses further writes");
            let _ = self.shared.poisoned.set(cause.clone());
            self.next_feed = feed_before;
            for (reply, _) in accepted {
                let _ = reply.send(Err(StoreError::Poisoned(cause.clone())));
            }
            return;
        }
        let stats = &self.shared.stats;
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.sets.fetch_add(accepted.len() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(entries, Ordering::Relaxed);
        self.shared.durable_feed.store(self.next_feed - 1, Ordering::Release);
        if self.tips.len() + heads.len() > MAX_CACHED_TIPS {
            self.tips.clear();
        }
        self.tips.extend(heads.into_iter().map(|(id, h)| (id, (h.seq, h.hash))));
        for (reply, appended) in accepted {
            let _ = reply.send(Ok(appended));
        }
    }

    /// Checks one write set against the heads (durable, or staged by earlier sets of this
    /// group) and adds it to the batch, taking the states it carries. A set that fails adds
    /// nothing.
    fn stage(
        &mut self,
        set: &mut WriteSet,
        heads: &mut HashMap<ExecutionId, StoredHead>,
        batch: &mut WriteBatch,
    ) -> Result<Vec<Appended>, StoreError> {
        // Phase 1: check every append against a private copy of the heads it touches.
        let mut local: HashMap<ExecutionId, StoredHead> = HashMap::new();
        for a in &mut set.appends {
            let id = a.execution_id();
            let staged = local.get(&id).or_else(|| heads.get(&id));
            // Read from RocksDB only when neither this group nor the tips know the execution.
            let mut durable = None;
            let (seq, hash) = match (staged, self.tips.get(&id)) {
                (Some(h), _) => (h.seq, h.hash),
                (None, Some(tip)) => *tip,
                (None, None) => {
                    let h = durable.insert(read_head(&self.db, id)?);
                    (h.seq, h.hash)
                }
            };
            let (seq, hash) = (Seq::new(seq), EntryHash::from_bytes(hash));
            if a.first_seq() != seq.next() || a.attach_hash() != hash {
                return Err(StoreError::SeqConflict {
                    execution_id: id,
                    expected: a.first_seq(),
                    expected_prev: a.attach_hash(),
                    head: seq,
                    head_hash: hash,
                });
            }
            // An append without a state keeps the one before it.
            let state = match (a.state.take(), staged, durable) {
                (Some(s), _, _) => s,
                (None, Some(h), _) => h.state.clone(),
                (None, None, Some(h)) => h.state,
                (None, None, None) => read_head(&self.db, id)?.state,
            };
            let last = a.last();
            local.insert(id, StoredHead { seq: last.seq().get(), hash: *last.hash().as_bytes(), state });
        }

        // Phase 2: everything holds; write it.
        let db = &*self.db;
        let mut appended = Vec::with_capacity(set.appends.len());
        let mut value = Vec::new();
        for a in &set.appends {
            let id = a.execution_id();
            // One record per group of entries, not per entry: an event's entries cost one
            // memtable insert and, later, one record to compact.
            for group in a.entries.chunks(codec::GROUP_MAX) {
                codec::encode_group(group, &mut value);
                batch.put_cf(cf(db, cf::ENTRIES), codec::entry_key(id, group[0].seq()), &value);
            }
            let feed =
                StoredFeed { execution_id: *id.as_bytes(), first_seq: a.first_seq().get(), leaves: a.leaves.clone() };
            batch.put_cf(cf(db, cf::FEED), self.next_feed.to_be_bytes(), codec::encode(&feed));
            appended.push(Appended {
                execution_id: id,
                first_seq: a.first_seq(),
                last_seq: a.last().seq(),
                last_hash: a.last().hash(),
                feed_position: self.next_feed,
            });
            self.next_feed += 1;
        }
        for (id, head) in local {
            batch.put_cf(cf(db, cf::HEADS), id.as_bytes(), codec::encode(&head));
            heads.insert(id, head);
        }
        for (table, k, v) in &set.puts {
            batch.put_cf(cf(db, cf::for_table(*table)), k, v);
        }
        for (table, k) in &set.deletes {
            batch.delete_cf(cf(db, cf::for_table(*table)), k);
        }
        Ok(appended)
    }
}

pub(crate) fn read_head(db: &DB, id: ExecutionId) -> Result<StoredHead, StoreError> {
    match db.get_pinned_cf(cf(db, cf::HEADS), id.as_bytes())? {
        Some(bytes) => codec::decode(|| format!("head of execution {id}"), &bytes),
        None => Ok(StoredHead { seq: 0, hash: [0; 32], state: Vec::new() }),
    }
}

pub(crate) fn last_feed_position(db: &DB) -> Result<u64, StoreError> {
    let mut it = db.raw_iterator_cf(cf(db, cf::FEED));
    it.seek_to_last();
    it.status()?;
    Ok(match it.key() {
        Some(k) => u64::from_be_bytes(k.try_into().map_err(|_| StoreError::Corrupt {
            what: "feed key".into(),
            detail: format!("{} bytes, expected 8", k.len()),
        })?),
        None => 0,
    })
}
