//! PLED's ledger store on RocksDB.
//!
//! - Column families: `entries` (one record per append of up to 32 entries, keyed by its
//!   first entry: `execution id || seq BE`), `heads` (last seq, last hash,
//!   current state bytes per execution), `feed` (every append in durable order, with its
//!   entries' Merkle leaves, for commit rounds), `snapshots`, `idempotency` (answers to
//!   idempotency keys, which expire: [`StoreOptions::idempotency_ttl`]), `meta` (service
//!   records), `jobs` (work queues), `commitments` (Merkle rounds), `queue` (work ordered by due time: action attempts, armed
//!   timers, schedules).
//! - Writes go through one group-commit writer thread ([`writer`]): each caller's
//!   [`WriteSet`] is atomic, many share one synced `WriteBatch`, and a caller is answered only
//!   after the sync. Appends carry the seq they expect, so a lost race is
//!   [`StoreError::SeqConflict`], never a fork.
//! - Reads go straight to RocksDB and never wait for the writer.
//!
//! ```
//! # tokio_test();
//! # fn tokio_test() {
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt};
//! use pled_store::{Append, Store, StoreOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
//! let id = ExecutionId::new_v7();
//! let head = ChainHead::genesis(id);
//! let entry = head.next_entry(Kind::new("demo").unwrap(), RecordedAt::now(), Body::empty());
//! let done = store.append(Append::new(vec![entry.clone()]).unwrap()).await.unwrap();
//! assert_eq!(done.last_seq.get(), 1);
//! assert_eq!(store.entry(id, done.last_seq).unwrap(), Some(entry));
//! # });
//! # }
//! ```

mod batch;
mod codec;
mod copy;
mod error;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pled_core::merkle::{Node, hash_leaves};
use pled_core::{ChainHead, EntryHash, ExecutionId, SealedEntry, Seq};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions};
use tokio::sync::{mpsc, oneshot};

pub use batch::{Append, Appended, Table, WriteSet};
pub use copy::CopyProgress;
pub use error::StoreError;
pub use writer::WriterStats;

use codec::{LegacyStoredFeed, StoredFeed, StoredHead};
use writer::{Request, Shared, Writer};

type ReplyRx = oneshot::Receiver<Result<Vec<Appended>, StoreError>>;

/// A raw record of a [`Table`]: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Column family names.
pub(crate) mod cf {
    use crate::Table;

    pub(crate) const ENTRIES: &str = "entries";
    pub(crate) const HEADS: &str = "heads";
    pub(crate) const FEED: &str = "feed";
    pub(crate) const SNAPSHOTS: &str = "snapshots";
    pub(crate) const IDEMPOTENCY: &str = "idempotency";
    pub(crate) const META: &str = "meta";
    pub(crate) const JOBS: &str = "jobs";
    pub(crate) const COMMITMENTS: &str = "commitments";
    pub(crate) const QUEUE: &str = "queue";
    pub(crate) const ALL: [&str; 9] = [ENTRIES, HEADS, FEED, SNAPSHOTS, IDEMPOTENCY, META, JOBS, COMMITMENTS, QUEUE];

    pub(crate) fn for_table(t: Table) -> &'static str {
        match t {
            Table::Snapshots => SNAPSHOTS,
            Table::Idempotency => IDEMPOTENCY,
            Table::Meta => META,
            Table::Jobs => JOBS,
            Table::Commitments => COMMITMENTS,
            Table::Queue => QUEUE,
        }
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    #[allow(clippy::unwrap_used)] // INVARIANT: every name in cf::ALL is opened by Store::open.
    db.cf_handle(name).unwrap()
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Sync every group write to disk before answering (default true). Turning it off is
    /// for throw-away stores only: an acknowledged write may then be lost on power failure.
    pub sync: bool,
    /// How many write sets may wait for the writer before callers are slowed down
    /// (backpressure). Default 16,384.
    pub queue_capacity: usize,
    /// RocksDB memtable size per column family, in bytes. Default 64 MiB.
    pub write_buffer_size: usize,
    /// How long an idempotency record ([`Table::Idempotency`]) is kept after it is written:
    /// then it reads as absent and compactions remove it. `None` (default): kept forever.
    pub idempotency_ttl: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { sync: true, queue_capacity: 16_384, write_buffer_size: 64 << 20, idempotency_ttl: None }
    }
}

/// What one column family holds, as RocksDB estimates it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableSize {
    /// The column family (`entries`, `heads`, `feed`, `snapshots`, `idempotency`, …).
    pub name: &'static str,
    /// Bytes in its table files on disk.
    pub disk_bytes: u64,
    /// Bytes in its memtables, not yet flushed to table files (they are in the write-ahead log).
    pub memtable_bytes: u64,
    /// Records, estimated: overwritten, deleted and expired ones count until a compaction.
    pub keys: u64,
}

/// A chain's recorded end and its execution's current state bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Head {
    /// The chain's head (seq 0 when empty).
    pub chain: ChainHead,
    /// The execution's state bytes as last written with an append (empty if never).
    pub state: Vec<u8>,
}

/// One append in the global feed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FeedItem {
    /// Its position, from 1.
    pub position: u64,
    /// The execution.
    pub execution_id: ExecutionId,
    /// The first seq appended.
    pub first_seq: Seq,
    /// The last seq appended.
    pub last_seq: Seq,
    /// The Merkle leaves ([`pled_core::merkle::leaf_hash`]) of the entries
    /// `first_seq..=last_seq`, in order.
    pub leaves: Vec<Node>,
}

/// The ledger store. Cheap to clone; the writer thread stops when the last clone is dropped,
/// after committing everything already submitted.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<DB>,
    /// `None` when read-only.
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// A read-only store's own directory (RocksDB's secondary path), removed with it.
    scratch: Option<PathBuf>,
    /// [`StoreOptions::idempotency_ttl`].
    idempotency_ttl: Option<Duration>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let open_err = |detail: String| StoreError::Open { path: path.display().to_string(), detail };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        // Flushes and compactions are background work: their threads run at the lowest CPU
        // priority, so they take idle CPU rather than the lanes'. Under ingest, flushing a full
        // 64 MB memtable at normal priority held requests for up to ~250 ms.
        let mut env = rocksdb::Env::new().map_err(|e| open_err(e.into_string()))?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        db_opts.set_env(&env);
        let descriptors = cf::ALL.iter().map(|name| {
            let mut o = Options::default();
            o.set_write_buffer_size(options.write_buffer_size);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == cf::IDEMPOTENCY {
                // Compactions drop expired records; each table file is compacted again at least
                // once per TTL (and at least a day apart), so none outlives about twice the TTL.
                o.set_compaction_filter("pled-expired", |_level, _key, value: &[u8]| {
                    match codec::unexpired(value, pled_core::unix_millis_now()) {
                        Some(_) => rocksdb::CompactionDecision::Keep,
                        None => rocksdb::CompactionDecision::Remove,
                    }
                });
                if let Some(ttl) = options.idempotency_ttl {
                    o.set_periodic_compaction_seconds(ttl.as_secs().max(86_400));
                }
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(|e| {
            let msg = e.into_string();
            if msg.contains("LOCK") {
                open_err("it is in use by another process (RocksDB LOCK is held)".into())
            } else {
                open_err(msg)
            }
        })?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared::default());
        let writer = Writer::new(db.clone(), shared.clone(), options.sync)?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("pled-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_err(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tx: Some(tx),
                writer: Some(handle),
                shared,
                scratch: None,
                idempotency_ttl: options.idempotency_ttl,
            }),
        })
    }

    /// Opens the store in `path` to read it, even while a server writes it: a consistent view
    /// as of this call (RocksDB's secondary instance, which also reads the primary's WAL).
    /// Never writes to `path`, creates nothing there and takes no lock; writes answer
    /// [`StoreError::ReadOnly`]. RocksDB keeps its own bookkeeping in a scratch directory
    /// under the system's temporary directory, removed when the store is dropped (or, if the
    /// process was killed, by the next read-only open).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let open_err = |detail: String| StoreError::Open { path: path.display().to_string(), detail };
        if !path.join("CURRENT").exists() {
            return Err(open_err("no store there".into()));
        }
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = std::env::temp_dir();
        remove_stale_scratch(&temp);
        let scratch = temp.join(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id()));
        // Left behind by a process that had this pid and was killed.
        let _ = std::fs::remove_dir_all(&scratch);
        let mut db_opts = Options::default();
        // A secondary instance must keep every table file open: the primary's compactions may
        // delete them while it reads.
        db_opts.set_max_open_files(-1);
        let db = DB::open_cf_as_secondary(&db_opts, path, &scratch, cf::ALL).map_err(|e| {
            let _ = std::fs::remove_dir_all(&scratch);
            open_err(e.into_string())
        })?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared::default());
        shared.durable_feed.store(writer::last_feed_position(&db)?, std::sync::atomic::Ordering::Release);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tx: None,
                writer: None,
                shared,
                scratch: Some(scratch),
                idempotency_ttl: None,
            }),
        })
    }

    /// Whether it was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.scratch.is_some()
    }

    fn db(&self) -> &DB {
        &self.inner.db
    }

    fn sender(&self) -> Result<&mpsc::Sender<Request>, StoreError> {
        match &self.inner.tx {
            Some(tx) => Ok(tx),
            None if self.is_read_only() => Err(StoreError::ReadOnly),
            None => Err(StoreError::Closed),
        }
    }

    fn request(&self, mut set: WriteSet) -> Result<(Request, ReplyRx), StoreError> {
        if let Some(cause) = self.inner.shared.poisoned.get() {
            return Err(StoreError::Poisoned(cause.clone()));
        }
        // Stamped here, in the caller's task, not on the single writer thread.
        let ttl = self.inner.idempotency_ttl;
        let mut until = None;
        for (_, _, value) in set.puts.iter_mut().filter(|(t, _, _)| t.expires()) {
            let until = *until.get_or_insert_with(|| {
                ttl.map_or(u64::MAX, |ttl| {
                    pled_core::unix_millis_now().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                })
            });
            *value = codec::with_expiry(value, until);
        }
        let (reply, rx) = oneshot::channel();
        Ok((Request { set, reply }, rx))
    }

    /// Makes a write set durable (atomically, after a sync) and returns what each append
    /// became, in order.
    pub async fn write(&self, set: WriteSet) -> Result<Vec<Appended>, StoreError> {
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let (req, rx) = self.request(set)?;
        let tx = self.sender()?;
        tx.send(req).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for callers outside an async runtime (the CLI). Must not be called
    /// from inside one.
    pub fn write_blocking(&self, set: WriteSet) -> Result<Vec<Appended>, StoreError> {
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let (req, rx) = self.request(set)?;
        let tx = self.sender()?;
        tx.blocking_send(req).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Appends one run of entries.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let mut done = self.write(WriteSet::new().append(append)).await?;
        done.pop().ok_or(StoreError::Closed)
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.shared.stats
    }

    /// Makes the writer's next group write fail as if RocksDB had reported `message`
    /// (the seam through which tests exercise the poisoning path).
    #[doc(hidden)]
    pub fn inject_write_failure(&self, message: &str) {
        if let Ok(mut f) = self.inner.shared.inject_failure.lock() {
            *f = Some(message.to_owned());
        }
    }

    /// Why writes are refused, if they are.
    pub fn poisoned(&self) -> Option<&str> {
        self.inner.shared.poisoned.get().map(String::as_str)
    }

    /// A cheap read that proves the database answers (for readiness checks).
    pub fn check(&self) -> Result<(), StoreError> {
        self.db().get_pinned_cf(cf(self.db(), cf::META), b"\0readiness")?;
        Ok(())
    }

    /// The recorded head and state of an execution; `None` if it has no entries.
    pub fn head(&self, execution: ExecutionId) -> Result<Option<Head>, StoreError> {
        let Some(bytes) = self.db().get_pinned_cf(cf(self.db(), cf::HEADS), execution.as_bytes())? else {
            return Ok(None);
        };
        let h: StoredHead = codec::decode(|| format!("head of execution {execution}"), &bytes)?;
        Ok(Some(to_head(execution, h)))
    }

    /// The chain head of an execution (genesis when it has no entries).
    pub fn chain_head(&self, execution: ExecutionId) -> Result<ChainHead, StoreError> {
        Ok(self.head(execution)?.map_or_else(|| ChainHead::genesis(execution), |h| h.chain))
    }

    /// One entry.
    pub fn entry(&self, execution: ExecutionId, seq: Seq) -> Result<Option<SealedEntry>, StoreError> {
        let raw = self.group_at(execution, seq);
        let Some(mut group) = record_at(execution, &raw, seq)? else { return Ok(None) };
        match group.next_entry(execution) {
            Some(Ok(e)) if e.seq() == seq => Ok(Some(e)),
            Some(Err((at, detail))) => Err(corrupt(execution, at, detail)),
            _ => Ok(None),
        }
    }

    /// A raw iterator over one execution's records, at the record that holds `seq` or, if
    /// none does, at the first record after it. No record holds more than
    /// [`codec::GROUP_MAX`] entries, so the one holding `seq` starts at most that many
    /// before it: a forward seek there and a short walk (`seek_for_prev` would turn RocksDB's
    /// merging iterator around, which cost three times a forward seek).
    fn group_at(&self, execution: ExecutionId, seq: Seq) -> rocksdb::DBRawIteratorWithThreadMode<'_, DB> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(execution.as_bytes()));
        let mut raw = self.db().raw_iterator_cf_opt(cf(self.db(), cf::ENTRIES), ro);
        let earliest = Seq::new(seq.get().saturating_sub(codec::GROUP_MAX as u64 - 1));
        raw.seek(codec::entry_key(execution, earliest));
        while let (Some(k), Some(v)) = (raw.key(), raw.value()) {
            // A bad key or record stops the walk here: the reader reports it.
            match codec::split_entry_key(k) {
                Some((_, first)) if codec::Group::new(first, v).reaches(seq) == Ok(false) => raw.next(),
                _ => break,
            }
        }
        raw
    }

    /// Up to `limit` entries after `after` (exclusive), in seq order.
    pub fn entries(&self, execution: ExecutionId, after: Seq, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        self.iter_entries(execution, after.next()).take(limit).collect()
    }

    /// Every entry of an execution from `from` (inclusive), in seq order.
    pub fn iter_entries(&self, execution: ExecutionId, from: Seq) -> Entries<'_> {
        Entries { cursor: self.cursor(execution, from), done: false }
    }

    /// A walk over an execution's stored entries from `from` (inclusive) that builds none
    /// of them unless asked ([`Cursor`]).
    pub fn cursor(&self, execution: ExecutionId, from: Seq) -> Cursor<'_> {
        Cursor { raw: self.group_at(execution, from), execution, from, at: None, done: false }
    }

    /// Up to `limit` executions after `after` (exclusive; `None` = from the start), in id
    /// order, with their heads.
    pub fn heads(&self, after: Option<ExecutionId>, limit: usize) -> Result<Vec<Head>, StoreError> {
        let start = after.map(|a| prefix_end(a.as_bytes())).unwrap_or_default();
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut out = Vec::new();
        for item in self.db().iterator_cf(cf(self.db(), cf::HEADS), mode).take(limit) {
            let (k, v) = item?;
            let id = ExecutionId::from_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "head key".into(),
                detail: format!("{} bytes, expected 16", k.len()),
            })?);
            out.push(to_head(id, codec::decode(|| format!("head of execution {id}"), &v)?));
        }
        Ok(out)
    }

    /// The newest snapshot of an execution at or before `at` (inclusive).
    pub fn latest_snapshot(&self, execution: ExecutionId, at: Seq) -> Result<Option<(Seq, Vec<u8>)>, StoreError> {
        let mut it = self.db().raw_iterator_cf(cf(self.db(), cf::SNAPSHOTS));
        it.seek_for_prev(codec::entry_key(execution, at));
        it.status()?;
        match (it.key(), it.value()) {
            (Some(k), Some(v)) => match codec::split_entry_key(k) {
                Some((id, seq)) if id == execution => Ok(Some((seq, v.to_vec()))),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Up to `limit` snapshots of an execution with `after < seq <= up_to`, oldest first: a
    /// bounded range scan, so reading the few snapshots a replay passes costs the same however
    /// many the execution has.
    pub fn snapshots(
        &self,
        execution: ExecutionId,
        after: Seq,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StoreError> {
        let Some(first) = after.get().checked_add(1).filter(|&f| f <= up_to.get()) else {
            return Ok(Vec::new());
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match up_to.get().checked_add(1) {
            Some(end) => codec::entry_key(execution, Seq::new(end)).to_vec(),
            None => prefix_end(execution.as_bytes()),
        });
        let start = codec::entry_key(execution, Seq::new(first));
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut out = Vec::new();
        for item in self.db().iterator_cf_opt(cf(self.db(), cf::SNAPSHOTS), ro, mode).take(limit) {
            let (k, v) = item?;
            let (_, seq) = codec::split_entry_key(&k).ok_or_else(|| StoreError::Corrupt {
                what: format!("snapshot key of execution {execution}"),
                detail: format!("{} bytes, expected 24", k.len()),
            })?;
            out.push((seq, v.into_vec()));
        }
        Ok(out)
    }

    /// One record of a directly written table (`None` also once it has expired).
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !table.expires() {
            return Ok(self.db().get_cf(cf(self.db(), cf::for_table(table)), key)?);
        }
        let stored = self.db().get_pinned_cf(cf(self.db(), cf::for_table(table)), key)?;
        Ok(stored.and_then(|v| codec::unexpired(&v, pled_core::unix_millis_now()).map(<[u8]>::to_vec)))
    }

    /// Gives the records of expiring tables that were written before records expired (by
    /// versions before 2026-12-03: they carry no expiry and would be kept for ever) the TTL
    /// from now ([`StoreOptions::idempotency_ttl`]). They are rewritten through the writer,
    /// 1,000 per write; no request rewrites such a record meanwhile (a key with a record is
    /// answered from it). Done once per store: a record in `meta` under
    /// [`LEGACY_EXPIRY_DONE`] remembers it. Returns how many records it stamped; 0 without a TTL.
    pub async fn expire_legacy_records(&self) -> Result<u64, StoreError> {
        if self.inner.idempotency_ttl.is_none() || self.get(Table::Meta, LEGACY_EXPIRY_DONE)?.is_some() {
            return Ok(0);
        }
        let (mut after, mut stamped) = (Vec::new(), 0u64);
        loop {
            let mut set = WriteSet::new();
            let mut scanned = 0;
            {
                let mut it = self.db().raw_iterator_cf(cf(self.db(), cf::IDEMPOTENCY));
                it.seek(&after);
                if !after.is_empty() && it.key() == Some(after.as_slice()) {
                    it.next();
                }
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if set.puts.len() == 1_000 || scanned == 100_000 {
                        break;
                    }
                    scanned += 1;
                    after = k.to_vec();
                    if !codec::stamped(v) {
                        set = set.put(Table::Idempotency, k.to_vec(), v.to_vec());
                    }
                    it.next();
                }
                it.status()?;
            }
            let done = scanned == 0;
            stamped += set.puts.len() as u64;
            if done {
                self.write(WriteSet::new().put(Table::Meta, LEGACY_EXPIRY_DONE.to_vec(), stamped.to_string())).await?;
                return Ok(stamped);
            }
            self.write(set).await?;
        }
    }

    /// The size of every column family, in the order of the module documentation.
    pub fn sizes(&self) -> Result<Vec<TableSize>, StoreError> {
        let db = self.db();
        let int = |name: &str, property: &rocksdb::properties::PropName| -> Result<u64, StoreError> {
            Ok(db.property_int_value_cf(cf(db, name), property)?.unwrap_or(0))
        };
        cf::ALL
            .iter()
            .map(|&name| {
                Ok(TableSize {
                    name,
                    disk_bytes: int(name, rocksdb::properties::TOTAL_SST_FILES_SIZE)?,
                    memtable_bytes: int(name, rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)?,
                    keys: int(name, rocksdb::properties::ESTIMATE_NUM_KEYS)?,
                })
            })
            .collect()
    }

    /// Compacts a table's whole key range now, as RocksDB otherwise does in its own time
    /// (dropping expired records). For tests.
    #[doc(hidden)]
    pub fn compact(&self, table: Table) {
        self.db().compact_range_cf(cf(self.db(), cf::for_table(table)), None::<&[u8]>, None::<&[u8]>);
    }

    /// How many records a table holds on disk, expired ones included. For tests.
    #[doc(hidden)]
    pub fn stored_records(&self, table: Table) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.db().iterator_cf(cf(self.db(), cf::for_table(table)), IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` records of a table whose key starts with `prefix`, with keys after
    /// `after` (exclusive; empty = from the start of the prefix), in key order.
    pub fn scan(&self, table: Table, prefix: &[u8], after: &[u8], limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut start = if after.is_empty() { prefix.to_vec() } else { after.to_vec() };
        if !after.is_empty() {
            start.push(0); // the smallest key after `after`
        }
        let mut ro = ReadOptions::default();
        if !prefix.is_empty() {
            ro.set_iterate_upper_bound(prefix_end(prefix));
        }
        let mode = IteratorMode::From(&start, Direction::Forward);
        let now = pled_core::unix_millis_now();
        let mut out = Vec::new();
        for item in self.db().iterator_cf_opt(cf(self.db(), cf::for_table(table)), ro, mode) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            if !table.expires() {
                out.push((k.to_vec(), v.to_vec()));
            } else if let Some(v) = codec::unexpired(&v, now) {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// The last durable feed position (0 while the feed is empty).
    pub fn feed_head(&self) -> u64 {
        self.inner.shared.durable_feed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The hashes of an execution's entries `from..=to`, in seq order, without building the
    /// entries (the commit rounds' fast path). Missing entries end the list early.
    pub fn entry_hashes(&self, execution: ExecutionId, from: Seq, to: Seq) -> Result<Vec<EntryHash>, StoreError> {
        let mut out = Vec::with_capacity((to.get().saturating_sub(from.get()) + 1) as usize);
        let mut expected = from;
        let mut raw = self.group_at(execution, from);
        while expected <= to {
            let Some(mut group) = record_at(execution, &raw, expected)? else { break };
            while let Some(item) = group.next_hash() {
                let (seq, hash) = item.map_err(|detail| corrupt(execution, expected, detail))?;
                if seq != expected || seq > to {
                    return Ok(out);
                }
                out.push(hash);
                expected = expected.next();
            }
            raw.next();
        }
        Ok(out)
    }

    /// The record of `table` with the greatest key `<= key`, if it starts with `prefix`.
    pub fn seek_prev(&self, table: Table, prefix: &[u8], key: &[u8]) -> Result<Option<Record>, StoreError> {
        let mut it = self.db().raw_iterator_cf(cf(self.db(), cf::for_table(table)));
        it.seek_for_prev(key);
        it.status()?;
        Ok(match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => Some((k.to_vec(), v.to_vec())),
            _ => None,
        })
    }

    /// Up to `limit` feed items after position `after` (exclusive).
    pub fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let start = (after + 1).to_be_bytes();
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut out = Vec::new();
        for item in self.db().iterator_cf(cf(self.db(), cf::FEED), mode).take(limit) {
            let (k, v) = item?;
            let position = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "feed key".into(),
                detail: format!("{} bytes, expected 8", k.len()),
            })?);
            out.push(match codec::decode_raw::<StoredFeed>(&v) {
                Ok(f) if !f.leaves.is_empty() => FeedItem {
                    position,
                    execution_id: ExecutionId::from_bytes(f.execution_id),
                    first_seq: Seq::new(f.first_seq),
                    last_seq: Seq::new(f.first_seq + f.leaves.len() as u64 - 1),
                    leaves: f.leaves,
                },
                // Written before feed records carried leaves: compute them from the entries.
                _ => {
                    let f: LegacyStoredFeed = codec::decode(|| format!("feed item {position}"), &v)?;
                    let (execution_id, first_seq, last_seq) =
                        (ExecutionId::from_bytes(f.execution_id), Seq::new(f.first_seq), Seq::new(f.last_seq));
                    let hashes = self.entry_hashes(execution_id, first_seq, last_seq)?;
                    let leaves = hash_leaves(&[(execution_id, first_seq, &hashes)]);
                    FeedItem { position, execution_id, first_seq, last_seq, leaves }
                }
            });
        }
        Ok(out)
    }
}

fn to_head(execution: ExecutionId, h: StoredHead) -> Head {
    Head {
        chain: ChainHead { execution_id: execution, seq: Seq::new(h.seq), hash: EntryHash::from_bytes(h.hash) },
        state: h.state,
    }
}

/// The entries of one execution in seq order ([`Store::iter_entries`]), each built from where
/// it lies in its record ([`Cursor`]). Ends after the last entry or after the first error.
pub struct Entries<'a> {
    cursor: Cursor<'a>,
    done: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<SealedEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.cursor.next()?.and_then(StoredRef::to_sealed);
        self.done = item.is_err();
        Some(item)
    }
}

/// A walk over one execution's stored entries in seq order that lends each entry where it
/// lies in its RocksDB record ([`Store::cursor`]): its seq, kind and hash cost no copy, and
/// the entry itself is built only when asked ([`StoredRef::to_sealed`]). A reader that needs
/// most entries only by their hash (replay compares them) builds none of those. Not an
/// `Iterator`: an entry borrows the cursor until the next one is read. Ends after the last
/// entry or after the first error.
pub struct Cursor<'a> {
    raw: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    execution: ExecutionId,
    /// Entries before this seq (in the first record) are skipped.
    from: Seq,
    /// In the record under `raw`: the bytes read and the next entry's seq (`None`: the
    /// record is not opened yet).
    at: Option<(usize, Seq)>,
    done: bool,
}

impl Cursor<'_> {
    /// The next entry, or the error that ends the walk.
    #[allow(clippy::should_implement_trait)] // INVARIANT: a lending walk cannot be an `Iterator`.
    pub fn next(&mut self) -> Option<Result<StoredRef<'_>, StoreError>> {
        let execution = self.execution;
        // Find a record with an entry left, opening records as the walk reaches them.
        let (at, next) = loop {
            if self.done {
                return None;
            }
            let Some(value) = self.raw.value() else {
                self.done = true;
                return self.raw.status().err().map(|e| Err(e.into()));
            };
            let (at, next) = match self.at {
                Some(pos) => pos,
                None => match record_at(execution, &self.raw, self.from) {
                    Ok(Some(group)) => group.at(value),
                    Ok(None) => (value.len(), self.from),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
            };
            if at < value.len() {
                break (at, next);
            }
            self.raw.next();
            self.at = None;
        };
        let value = self.raw.value().unwrap_or_default();
        let mut group = codec::Group::resume(value, at, next);
        let read = group.next_stored().map(|r| {
            r.and_then(|(seq, stored)| {
                let kind = std::str::from_utf8(stored.kind).map_err(|e| format!("kind: {e}"))?;
                Ok(StoredRef { execution, seq, kind, stored })
            })
        });
        self.at = Some(group.at(value));
        match read {
            Some(Ok(e)) => Some(Ok(e)),
            Some(Err(detail)) => {
                self.done = true;
                Some(Err(corrupt(execution, next, detail)))
            }
            None => None,
        }
    }
}

/// One stored entry where it lies in its record ([`Cursor::next`]).
pub struct StoredRef<'a> {
    execution: ExecutionId,
    seq: Seq,
    kind: &'a str,
    stored: codec::StoredEntry<'a>,
}

impl<'a> StoredRef<'a> {
    /// Its seq.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Its kind as stored (UTF-8; the kind's alphabet is checked by [`StoredRef::to_sealed`]).
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// Its body's stored bytes, unchecked (canonical JSON if the entry re-hashes).
    pub fn body_bytes(&self) -> &'a [u8] {
        self.stored.body
    }

    /// The hash stored with it (as claimed: re-hash the built entry to check it).
    pub fn hash(&self) -> EntryHash {
        EntryHash::from_bytes(self.stored.hash)
    }

    /// The entry, built: its text checked as UTF-8 and its kind's alphabet checked.
    pub fn to_sealed(self) -> Result<SealedEntry, StoreError> {
        let (execution, seq) = (self.execution, self.seq);
        self.stored.into_entry(execution, seq).map_err(|detail| corrupt(execution, seq, detail))
    }
}

fn record_at<'r>(
    execution: ExecutionId,
    raw: &'r rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
    seq: Seq,
) -> Result<Option<codec::Group<'r>>, StoreError> {
    let (Some(key), Some(value)) = (raw.key(), raw.value()) else {
        return raw.status().map(|()| None).map_err(Into::into);
    };
    let (_, first) = codec::split_entry_key(key).ok_or_else(|| StoreError::Corrupt {
        what: format!("entry key of execution {execution}"),
        detail: format!("{} bytes", key.len()),
    })?;
    let mut group = codec::Group::new(first, value);
    group.skip_to(seq).map_err(|detail| corrupt(execution, seq, detail))?;
    Ok(Some(group))
}

fn corrupt(execution: ExecutionId, seq: Seq, detail: String) -> StoreError {
    StoreError::Corrupt { what: format!("entry {seq} of execution {execution}"), detail }
}

/// The smallest key greater than every key starting with `prefix` (all-0xff prefixes do not
/// occur: ids are UUIDs and table prefixes are ASCII).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// The name of a read-only store's scratch directory under the temporary directory, before
/// `<pid>-<n>`.
const SCRATCH_PREFIX: &str = "pled-read-";

/// The `meta` key under which [`Store::expire_legacy_records`] notes that it ran (its value:
/// how many records it stamped).
pub const LEGACY_EXPIRY_DONE: &[u8] = b"store/legacy-idempotency-expiry";

/// Removes the scratch directories of read-only stores whose process is gone (killed before
/// it could remove its own). Only where `/proc` tells which processes run; a directory whose
/// pid another process has taken since stays until that one ends.
fn remove_stale_scratch(temp: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)).and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !proc.join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use pled_core::{Body, Kind, RecordedAt};

    use super::*;

    /// A new store, an execution id and its empty chain.
    fn setup(id: u128) -> (tempfile::TempDir, Store, ExecutionId, ChainHead) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let id = ExecutionId::from_u128(id);
        (dir, store, id, ChainHead::genesis(id))
    }

    #[test]
    fn a_feed_record_from_before_leaves_reads_with_the_leaves_of_its_entries() {
        let (_dir, store, id, mut head) = setup(42);
        let append = Append::new(chain(&mut head, 3)).unwrap();
        let leaves = append.leaves.clone();
        store.write_blocking(WriteSet::new().append(append)).unwrap();
        let current = store.feed(0, 10).unwrap();
        assert_eq!((current[0].last_seq, &current[0].leaves), (Seq::new(3), &leaves));
        let legacy = LegacyStoredFeed { execution_id: *id.as_bytes(), first_seq: 1, last_seq: 3 };
        store.db().put_cf(cf(store.db(), cf::FEED), 1u64.to_be_bytes(), codec::encode(&legacy)).unwrap();
        assert_eq!(store.feed(0, 10).unwrap(), current);
    }

    /// A read-only store opens next to the writing one (no lock), sees everything written
    /// before it opened (also what is only in the WAL), refuses writes, creates nothing in the
    /// data directory and removes its scratch directory when dropped.
    #[test]
    fn a_read_only_store_reads_a_store_another_handle_is_writing() {
        let (dir, store, id, mut head) = setup(9);
        store.write_blocking(WriteSet::new().append(Append::new(chain(&mut head, 5)).unwrap())).unwrap();
        let files = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names
        };
        let before = files();
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(files(), before, "nothing was created in the data directory");
        assert!(reader.is_read_only() && !store.is_read_only());
        assert_eq!(reader.chain_head(id).unwrap(), store.chain_head(id).unwrap());
        assert_eq!(reader.entries(id, Seq::FIRST, 10).unwrap(), store.entries(id, Seq::FIRST, 10).unwrap());
        assert_eq!(reader.feed_head(), store.feed_head());
        let more = WriteSet::new().append(Append::new(chain(&mut head.clone(), 1)).unwrap());
        assert!(matches!(reader.write_blocking(more), Err(StoreError::ReadOnly)));
        // Later writes of the primary are not in the view it opened with.
        store.write_blocking(WriteSet::new().append(Append::new(chain(&mut head, 2)).unwrap())).unwrap();
        assert_eq!(reader.chain_head(id).unwrap().seq, Seq::new(5));
        let scratch = reader.inner.scratch.clone().unwrap();
        assert!(scratch.exists());
        drop(reader);
        assert!(!scratch.exists(), "the scratch directory is removed");
        let missing = tempfile::tempdir().unwrap();
        assert!(matches!(Store::open_read_only(missing.path()), Err(StoreError::Open { .. })));
    }

    /// A read-only store's scratch directory left by a killed process is removed by the next
    /// read-only open; a running process's is kept.
    #[test]
    fn scratch_directories_of_dead_processes_are_removed() {
        let (dir, _store, _, _) = setup(9);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let temp = std::env::temp_dir();
        let stale = temp.join(format!("{SCRATCH_PREFIX}{dead}-7"));
        let live = temp.join(format!("{SCRATCH_PREFIX}1-7"));
        for d in [&stale, &live] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("LOG"), "rocksdb's log").unwrap();
        }
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert!(!stale.exists(), "a dead process's scratch directory is removed");
        assert!(live.exists(), "pid 1 runs: its directory is kept");
        drop(reader);
        std::fs::remove_dir_all(&live).unwrap();
    }

    /// `n` entries of kind `k` with empty bodies, sealed onto `head`.
    pub(crate) fn chain(head: &mut ChainHead, n: usize) -> Vec<SealedEntry> {
        (0..n)
            .map(|_| {
                let e = head.next_entry(Kind::new("k").unwrap(), RecordedAt::now(), Body::empty());
                head.advance(&e);
                e
            })
            .collect()
    }

    #[test]
    fn entries_read_the_same_from_records_of_one_and_of_many() {
        let (_dir, store, id, mut head) = setup(7);
        // Seq 1-2 as records of one entry without the group marker (as written before groups),
        // then appends of 3 and of 70 entries (split into groups of GROUP_MAX).
        let old = chain(&mut head, 2);
        for e in &old {
            let mut v = Vec::new();
            codec::encode_group(std::slice::from_ref(e), &mut v);
            store.db().put_cf(cf(store.db(), cf::ENTRIES), codec::entry_key(id, e.seq()), &v[1..]).unwrap();
        }
        let mut set = WriteSet::new();
        let mut all = old;
        for n in [3, 70] {
            let run = chain(&mut head, n);
            all.extend(run.clone());
            set = set.append(Append::new(run).unwrap());
        }
        let old_head = codec::StoredHead { seq: 2, hash: *all[1].hash().as_bytes(), state: vec![] };
        store.db().put_cf(cf(store.db(), cf::HEADS), id.as_bytes(), codec::encode(&old_head)).unwrap();
        store.write_blocking(set).unwrap();
        let records = store.db().iterator_cf(cf(store.db(), cf::ENTRIES), IteratorMode::Start).count();
        assert_eq!(records, 2 + 1 + 70usize.div_ceil(codec::GROUP_MAX));

        let n = all.len() as u64;
        for seq in 0..=n + 1 {
            let want = all.get((seq as usize).wrapping_sub(1)).cloned();
            assert_eq!(store.entry(id, Seq::new(seq)).unwrap(), want, "entry {seq}");
            let from: Vec<_> = store.iter_entries(id, Seq::new(seq)).map(Result::unwrap).collect();
            assert_eq!(from, all[(seq.max(1) as usize - 1).min(all.len())..], "from {seq}");
            let mut cursor = store.cursor(id, Seq::new(seq));
            let mut lent = Vec::new();
            while let Some(e) = cursor.next() {
                let e = e.unwrap();
                lent.push((e.seq(), e.kind().to_owned(), e.hash(), e.body_bytes().to_vec()));
            }
            let want: Vec<_> = from
                .iter()
                .map(|e| (e.seq(), e.entry().kind.to_string(), e.hash(), e.entry().body.as_str().as_bytes().to_vec()))
                .collect();
            assert_eq!(lent, want, "cursor from {seq}");
        }
        let hashes = |a: u64, b: u64| store.entry_hashes(id, Seq::new(a), Seq::new(b)).unwrap();
        assert_eq!(hashes(2, 40), all[1..40].iter().map(SealedEntry::hash).collect::<Vec<_>>());
        assert_eq!(hashes(70, 100), all[69..].iter().map(SealedEntry::hash).collect::<Vec<_>>());
        // Another execution's records are never read as this one's.
        assert_eq!(store.entry(ExecutionId::from_u128(6), Seq::FIRST).unwrap(), None);
        assert_eq!(store.iter_entries(ExecutionId::from_u128(8), Seq::FIRST).count(), 0);
        assert_eq!(crate::verify::verify_execution(&store, id).unwrap().seq, Seq::new(n));
    }

    #[test]
    fn a_cursor_lends_an_entry_that_does_not_build_and_entries_end_at_it() {
        let (_dir, store, id, mut head) = setup(9);
        let all = chain(&mut head, 3);
        let mut record = Vec::new();
        codec::encode_group(&all, &mut record);
        // Entry 2's body `{}` becomes `{` and a byte that is not UTF-8 (same length). Each
        // entry is 97 bytes: kind `k`, 27 bytes of time and the body, each after its length,
        // then two hashes; the record starts with the group marker.
        let at = 1 + 97 + (1 + 1) + (1 + 27) + 1;
        assert_eq!(&record[at..at + 2], b"{}");
        record[at + 1] = 0xff;
        store.db().put_cf(cf(store.db(), cf::ENTRIES), codec::entry_key(id, Seq::FIRST), &record).unwrap();

        // The cursor reads every seq and hash; only building entry 2 fails.
        let mut cursor = store.cursor(id, Seq::FIRST);
        let mut built = Vec::new();
        while let Some(e) = cursor.next() {
            let e = e.unwrap();
            assert_eq!(e.hash(), all[e.seq().get() as usize - 1].hash());
            built.push(e.to_sealed().map_err(|e| e.to_string()));
        }
        assert_eq!(built.len(), 3);
        assert!(built[1].as_ref().is_err_and(|e| e.contains("entry 2")), "{built:?}");
        assert_eq!((built[0].as_ref().ok(), built[2].as_ref().ok()), (Some(&all[0]), Some(&all[2])));
        // The iterator of built entries ends at the first that does not build.
        let read: Vec<_> = store.iter_entries(id, Seq::FIRST).collect();
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok() && read[1].is_err());
    }
}
