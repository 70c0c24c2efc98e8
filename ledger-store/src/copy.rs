//! Whole-store copies, for backups: a RocksDB checkpoint of a store this process writes
//! ([`Store::checkpoint`]), or a record-by-record copy of any store, also one a running server
//! writes, read through a read-only handle ([`Store::copy_to`]).

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, Options, ReadOptions, WriteBatch, WriteOptions};

use crate::{Store, StoreError, cf};

/// Where [`Store::copy_to`] is: the column family being copied and the totals so far.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress<'a> {
    /// The column family (`entries`, `heads`, …).
    pub table: &'a str,
    /// Its records copied so far.
    pub table_records: u64,
    /// Records copied so far, in all column families.
    pub records: u64,
    /// Their keys' and values' bytes.
    pub bytes: u64,
    /// Whether `table` is complete.
    pub table_done: bool,
}

/// Records written per batch of a copy (the batches skip the WAL: the copy is flushed and
/// synced at its end, and an interrupted copy is thrown away).
const COPY_BATCH_BYTES: usize = 4 << 20;

/// Records between two progress reports within a column family.
const PROGRESS_EVERY: u64 = 50_000;

fn rocks(e: rocksdb::Error) -> StoreError {
    StoreError::Rocks(e.into_string())
}

impl Store {
    /// Writes a consistent copy of the whole store into `dir`, which must not exist yet: a
    /// RocksDB checkpoint (memtables flushed first; table files hard-linked when `dir` is on
    /// the same filesystem, copied otherwise). The copy opens as a store of its own. Needs a
    /// store this process writes; [`Store::copy_to`] copies any.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        if self.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(self.db()).map_err(rocks)?;
        checkpoint.create_checkpoint(dir).map_err(rocks)
    }

    /// Copies every record of every column family into a new store in `dir` (which must not
    /// exist yet), then flushes and syncs it; the copy opens as a store of its own. What is
    /// copied is one consistent view: a read-only store's (fixed when it was opened, so this
    /// works beside a running server) or, for a store this process writes, a RocksDB snapshot
    /// taken at the start. Reports progress to `progress` every 50,000 records and at the end of
    /// each column family; returns the totals. On an error `dir` is left incomplete: throw it
    /// away.
    pub fn copy_to(&self, dir: &Path, mut progress: impl FnMut(CopyProgress<'_>)) -> Result<(u64, u64), StoreError> {
        if dir.exists() {
            return Err(StoreError::Open { path: dir.display().to_string(), detail: "it already exists".into() });
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_error_if_exists(true);
        let descriptors = cf::ALL.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let target = DB::open_cf_descriptors(&opts, dir, descriptors)
            .map_err(|e| StoreError::Open { path: dir.display().to_string(), detail: e.into_string() })?;
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);

        let source = self.db();
        let snapshot = (!self.is_read_only()).then(|| source.snapshot());
        let (mut records, mut bytes) = (0u64, 0u64);
        for name in cf::ALL {
            let mut read = ReadOptions::default();
            read.fill_cache(false);
            if let Some(s) = &snapshot {
                read.set_snapshot(s);
            }
            let to = cf(&target, name);
            let mut it = source.raw_iterator_cf_opt(cf(source, name), read);
            it.seek_to_first();
            let mut batch = WriteBatch::default();
            let mut in_table = 0u64;
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                batch.put_cf(to, k, v);
                (records, bytes, in_table) = (records + 1, bytes + (k.len() + v.len()) as u64, in_table + 1);
                if batch.size_in_bytes() >= COPY_BATCH_BYTES {
                    target.write_opt(std::mem::take(&mut batch), &no_wal).map_err(rocks)?;
                }
                if in_table.is_multiple_of(PROGRESS_EVERY) {
                    progress(CopyProgress { table: name, table_records: in_table, records, bytes, table_done: false });
                }
                it.next();
            }
            it.status().map_err(rocks)?;
            target.write_opt(batch, &no_wal).map_err(rocks)?;
            progress(CopyProgress { table: name, table_records: in_table, records, bytes, table_done: true });
        }
        let handles: Vec<_> = cf::ALL.iter().map(|name| cf(&target, name)).collect();
        target.flush_cfs_opt(&handles, &rocksdb::FlushOptions::default()).map_err(rocks)?;
        Ok((records, bytes))
    }
}
