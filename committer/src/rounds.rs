//! Commit rounds: planning, building, recovery, proofs, and the loop that closes them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pled_core::merkle::{MerkleTree, Node, to_0x};
use pled_core::proof::{ProofDocument, Scope};
use pled_core::{ExecutionId, RecordedAt, SealedEntry, Seq};
use pled_store::{FeedItem, Store, Table, WriteSet};
use serde::{Deserialize, Serialize};

use crate::error::CommitError;
use crate::keys;

/// A round closes at least this often when entries are pending: short enough that proofs
/// are available within seconds, long enough that one transaction anchors many entries.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
/// A round closes early once this many entries are pending (a 1M-leaf tree builds in well
/// under a second and its root costs one transaction).
pub const DEFAULT_MAX_ROUND_ENTRIES: u64 = 1_000_000;
/// Built trees kept in memory for fast proofs, counted in leaves (about 64 bytes each).
const TREE_CACHE_LEAVES: usize = 4_000_000;

/// When rounds close.
#[derive(Debug, Clone, Copy)]
pub struct CommitConfig {
    /// Close a round this often (when anything is pending).
    pub interval: Duration,
    /// Close a round once this many entries are pending. Rounds end on append boundaries,
    /// so a round may exceed it by less than one append.
    pub max_round_entries: u64,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self { interval: DEFAULT_COMMIT_INTERVAL, max_round_entries: DEFAULT_MAX_ROUND_ENTRIES }
    }
}

/// Where a root stands on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnchorStatus {
    /// The chain is off: the root is kept locally only.
    #[default]
    Unanchored,
    /// Built, waiting for the publisher.
    Built,
    /// A transaction was sent (tx hash and nonce recorded).
    Submitted,
    /// The transaction is in a block.
    Included,
    /// The block has the configured confirmations.
    Confirmed,
    /// The transaction reverted (the reason is in `error`); it is not retried.
    Failed,
}

/// The anchoring of a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Anchor {
    /// Status.
    pub status: AnchorStatus,
    /// EVM chain id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// `PLEDRegistry` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// Transaction hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Sender nonce of the transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// Block that includes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// That block's hash (a reorg changes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// Confirmations seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A commit round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundRecord {
    /// 1, 2, 3, …
    pub id: u64,
    /// Covers feed positions after this one…
    pub feed_from: u64,
    /// …up to and including this one.
    pub feed_to: u64,
    /// Leaves (entries) in the round.
    pub leaf_count: u64,
    /// The Merkle root (`0x` hex); absent while only planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// When planned.
    pub planned_at: RecordedAt,
    /// When built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_at: Option<RecordedAt>,
    /// Anchoring.
    pub anchor: Anchor,
}

/// The answer to a proof request.
#[derive(Debug, Clone)]
pub enum ProofAnswer {
    /// The entry is in a closed round (or the commitment asked for).
    Included(Box<ProofDocument>),
    /// The entry is not in a closed round yet; it will be in this one.
    Pending {
        /// The round that will cover it.
        until_round: u64,
    },
}

struct TreeCache {
    trees: HashMap<u64, Arc<MerkleTree>>,
    order: VecDeque<u64>,
    leaves: usize,
}

impl TreeCache {
    fn get(&self, id: u64) -> Option<Arc<MerkleTree>> {
        self.trees.get(&id).cloned()
    }

    fn put(&mut self, id: u64, tree: Arc<MerkleTree>) {
        if self.trees.insert(id, tree.clone()).is_none() {
            self.order.push_back(id);
            self.leaves += tree.len();
        }
        while self.leaves > TREE_CACHE_LEAVES && self.order.len() > 1 {
            if let Some(old) = self.order.pop_front()
                && let Some(t) = self.trees.remove(&old)
            {
                self.leaves -= t.len();
            }
        }
    }
}

/// Builds rounds and answers proofs over one store.
pub struct Committer {
    pub(crate) store: Store,
    config: CommitConfig,
    /// The anchor status of a freshly built round: `Built` when a publisher will anchor it,
    /// `Unanchored` when the chain is off.
    initial_anchor: AnchorStatus,
    trees: Mutex<TreeCache>,
    /// Serialises round closing (and commitment numbering).
    pub(crate) closing: Mutex<()>,
}

fn corrupt(e: impl std::fmt::Display) -> CommitError {
    CommitError::Corrupt(e.to_string())
}

impl Committer {
    /// A committer over `store`. Finishes a round that was planned but not built (after a
    /// crash), over the same range, so it gets the root it would have had.
    pub fn open(store: Store, config: CommitConfig, anchoring: bool) -> Result<Arc<Self>, CommitError> {
        let c = Arc::new(Self {
            store,
            config,
            initial_anchor: if anchoring { AnchorStatus::Built } else { AnchorStatus::Unanchored },
            trees: Mutex::new(TreeCache { trees: HashMap::new(), order: VecDeque::new(), leaves: 0 }),
            closing: Mutex::new(()),
        });
        // A read-only store (`pled audit export` beside a running server) leaves that to the
        // server: its entries are pending until then.
        if let Some(last) = c.last_round()?
            && last.root.is_none()
            && !c.store.is_read_only()
        {
            tracing::info!(round = last.id, "finishing a round planned before a restart");
            c.build(last)?;
        }
        Ok(c)
    }

    /// The configuration.
    pub fn config(&self) -> CommitConfig {
        self.config
    }

    /// Whether roots are anchored on a chain (else they stay `unanchored`).
    pub fn anchoring(&self) -> bool {
        self.initial_anchor == AnchorStatus::Built
    }

    /// One round.
    pub fn round(&self, id: u64) -> Result<Option<RoundRecord>, CommitError> {
        self.store
            .get(Table::Commitments, &keys::round(id))?
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .transpose()
    }

    /// The newest round.
    pub fn last_round(&self) -> Result<Option<RoundRecord>, CommitError> {
        match self.store.seek_prev(Table::Commitments, &[keys::ROUND], &keys::round(u64::MAX))? {
            Some((_, v)) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` rounds after `after`, oldest first.
    pub fn rounds_after(&self, after: u64, limit: usize) -> Result<Vec<RoundRecord>, CommitError> {
        let rows = self.store.scan(Table::Commitments, &[keys::ROUND], &keys::round(after), limit)?;
        rows.into_iter().map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt)).collect()
    }

    /// Records a round's new anchoring (the publisher's progress).
    pub fn set_anchor(&self, id: u64, anchor: Anchor) -> Result<RoundRecord, CommitError> {
        let mut r = self.round(id)?.ok_or_else(|| CommitError::NotFound(format!("round {id}")))?;
        r.anchor = anchor;
        self.store.write_blocking(WriteSet::new().put(
            Table::Commitments,
            keys::round(id),
            serde_json::to_vec(&r).map_err(corrupt)?,
        ))?;
        Ok(r)
    }

    /// Closes the next round over everything appended since the last one (at most about
    /// `max_round_entries`). Blocking: call it from a blocking thread. `None` when nothing is
    /// pending.
    pub fn close_round(&self) -> Result<Option<RoundRecord>, CommitError> {
        let _guard = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        let last = self.last_round()?;
        if let Some(r) = &last
            && r.root.is_none()
        {
            return self.build(r.clone()).map(Some);
        }
        let started = Instant::now();
        let from = last.as_ref().map_or(0, |r| r.feed_to);
        let head = self.store.feed_head();
        if head <= from {
            return Ok(None);
        }
        // Plan: the feed range and its size, on append boundaries.
        let (mut to, mut leaves, mut items) = (from, 0u64, Vec::new());
        'plan: while to < head {
            let page = self.store.feed(to, 4096)?;
            if page.is_empty() {
                break;
            }
            for item in page {
                if item.position > head {
                    break 'plan;
                }
                to = item.position;
                leaves += item.leaves.len() as u64;
                items.push(item);
                if leaves >= self.config.max_round_entries {
                    break 'plan;
                }
            }
        }
        if to == from {
            return Ok(None);
        }
        let plan = RoundRecord {
            id: last.map_or(1, |r| r.id + 1),
            feed_from: from,
            feed_to: to,
            leaf_count: leaves,
            root: None,
            planned_at: RecordedAt::now(),
            built_at: None,
            anchor: Anchor::default(),
        };
        self.store.write_blocking(WriteSet::new().put(
            Table::Commitments,
            keys::round(plan.id),
            serde_json::to_vec(&plan).map_err(corrupt)?,
        ))?;
        self.build_from(plan, items, started).map(Some)
    }

    /// The feed items of a round, in order.
    fn items(&self, r: &RoundRecord) -> Result<Vec<FeedItem>, CommitError> {
        let mut items = Vec::new();
        let mut at = r.feed_from;
        while at < r.feed_to {
            let page = self.store.feed(at, 4096)?;
            if page.is_empty() {
                return Err(CommitError::Corrupt(format!("round {}: feed ends at {at}, before {}", r.id, r.feed_to)));
            }
            for item in page {
                if item.position > r.feed_to {
                    break;
                }
                at = item.position;
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Builds a planned round (after a restart: reads its feed range again).
    fn build(&self, r: RoundRecord) -> Result<RoundRecord, CommitError> {
        let started = Instant::now();
        let items = self.items(&r)?;
        self.build_from(r, items, started)
    }

    /// Builds a planned round from its feed items (read since `started`): leaves, tree, root,
    /// then the index in slices of `INDEX_SLICE` appends (each its own write, so the lanes'
    /// writes go between them instead of waiting behind one large batch), and last the
    /// round record with its root. Until that last write the round has no root, so a proof
    /// of an entry whose index is already written answers "pending", and a crash leaves a
    /// planned round that is built again from the start (the index puts are idempotent).
    fn build_from(
        &self,
        mut r: RoundRecord,
        items: Vec<FeedItem>,
        started: Instant,
    ) -> Result<RoundRecord, CommitError> {
        let leaves = round_leaves(&items);
        let read_ms = started.elapsed().as_millis() as u64;
        let tree = Arc::new(MerkleTree::from_leaves(&leaves));
        let tree_ms = started.elapsed().as_millis() as u64 - read_ms;
        let root = tree.root().ok_or_else(|| CommitError::Corrupt(format!("round {} has no leaves", r.id)))?;
        let mut offset = 0u64;
        for slice in items.chunks(INDEX_SLICE) {
            let mut ws = WriteSet::new();
            for item in slice {
                ws = ws.put(
                    Table::Commitments,
                    keys::index(item.execution_id, item.first_seq),
                    keys::index_value(r.id, offset, item.last_seq),
                );
                offset += item.leaves.len() as u64;
            }
            self.store.write_blocking(ws)?;
        }
        let mut ws = WriteSet::new();
        r.leaf_count = leaves.len() as u64;
        r.root = Some(to_0x(&root));
        r.built_at = Some(RecordedAt::now());
        r.anchor = Anchor { status: self.initial_anchor, ..Anchor::default() };
        ws = ws.put(Table::Commitments, keys::round(r.id), serde_json::to_vec(&r).map_err(corrupt)?);
        if self.anchoring() {
            ws = self.enqueue(ws, &crate::outbox::Target::Round { round: r.id })?;
        }
        self.store.write_blocking(ws)?;
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).put(r.id, tree);
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            round = r.id,
            leaves = r.leaf_count,
            root = %to_0x(&root),
            ms,
            read_ms,
            tree_ms,
            write_ms = ms - read_ms - tree_ms,
            "round built"
        );
        Ok(r)
    }

    /// The tree of a built round (cached; rebuilt from its feed range otherwise).
    fn tree(&self, r: &RoundRecord) -> Result<Arc<MerkleTree>, CommitError> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|p| p.into_inner()).get(r.id) {
            return Ok(t);
        }
        let tree = Arc::new(MerkleTree::from_leaves(&round_leaves(&self.items(r)?)));
        if tree.root().map(|x| to_0x(&x)) != r.root {
            return Err(corrupt(format!("round {}: its entries no longer give its root", r.id)));
        }
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).put(r.id, tree.clone());
        Ok(tree)
    }

    /// The proof that entry `seq` of `execution` is in its round, or when it will be.
    pub fn proof(&self, execution: ExecutionId, seq: Seq) -> Result<ProofAnswer, CommitError> {
        let entry = self
            .store
            .entry(execution, seq)?
            .ok_or_else(|| CommitError::NotFound(format!("entry {seq} of execution {execution}")))?;
        let found =
            self.store.seek_prev(Table::Commitments, &keys::index_prefix(execution), &keys::index(execution, seq))?;
        let located = found.and_then(|(k, v)| {
            let first = keys::parse_seq_suffix(&k)?;
            let (round, offset, last) = keys::parse_index_value(&v)?;
            (seq <= last).then_some((round, offset + (seq.get() - first.get())))
        });
        let Some((round_id, leaf_index)) = located else {
            let next = self.last_round()?.map_or(1, |r| if r.root.is_some() { r.id + 1 } else { r.id });
            return Ok(ProofAnswer::Pending { until_round: next });
        };
        let r =
            self.round(round_id)?.ok_or_else(|| corrupt(format!("index names round {round_id}, which is missing")))?;
        if r.root.is_none() {
            return Ok(ProofAnswer::Pending { until_round: r.id });
        }
        let tree = self.tree(&r)?;
        let doc = self.document(
            &entry,
            &tree,
            leaf_index,
            Scope::Round { round: r.id, leaf_index, leaf_count: r.leaf_count },
            &r.anchor,
        )?;
        Ok(ProofAnswer::Included(Box::new(doc)))
    }

    pub(crate) fn document(
        &self,
        entry: &SealedEntry,
        tree: &MerkleTree,
        leaf_index: u64,
        scope: Scope,
        anchor: &Anchor,
    ) -> Result<ProofDocument, CommitError> {
        let path =
            tree.proof(leaf_index as usize).ok_or_else(|| corrupt(format!("leaf {leaf_index} outside its tree")))?;
        let root = tree.root().ok_or_else(|| corrupt("empty tree"))?;
        let anchor = serde_json::to_value(anchor).map_err(corrupt)?;
        let doc = ProofDocument::new(entry, &path, &root, scope, anchor);
        // The stored entry must be the one the tree committed to.
        doc.verify().map_err(|e| corrupt(format!("entry {} of {}: {e}", entry.seq(), entry.entry().execution_id)))?;
        Ok(doc)
    }

    /// Closes rounds every interval (or at `max_round_entries`) until `shutdown` says stop,
    /// then closes a last round over what is pending.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let stats_entries = || self.store.writer_stats().entries.load(Ordering::Relaxed);
        let mut closed_at = Instant::now();
        let mut entries_at_close = stats_entries();
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(25)) => {}
                _ = shutdown.changed() => break,
            }
            let pending = stats_entries().saturating_sub(entries_at_close);
            let due = closed_at.elapsed() >= self.config.interval;
            if !(due || pending >= self.config.max_round_entries) {
                continue;
            }
            closed_at = Instant::now();
            entries_at_close = stats_entries();
            let me = self.clone();
            match in_background(move || me.close_round()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "closing a round failed; retrying next interval")
                }
                Err(e) => tracing::error!(error = %e, "round not closed"),
            }
        }
        let me = self.clone();
        if let Ok(Err(e)) = in_background(move || me.close_round()).await {
            tracing::error!(error = %e, "closing the last round failed");
        }
    }
}

/// Appends indexed per write when a round is built.
const INDEX_SLICE: usize = 2048;

/// Runs `f` on a thread of its own at the lowest CPU priority (nice 19 on Linux; threads it
/// starts, such as the tree builder's, inherit it): closing a round is background work, and
/// the lanes answering requests must get the cores first.
async fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pled-rounds".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start the round thread: {e}"))?;
    rx.await.map_err(|_| "the round thread panicked".to_owned())
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments. On Linux, PRIO_PROCESS with id 0
    // sets the nice value of the calling thread alone.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the round thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// The leaves of every entry of `items`, in round order.
fn round_leaves(items: &[FeedItem]) -> Vec<Node> {
    items.iter().flat_map(|i| i.leaves.iter().copied()).collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The nice value of the calling thread (field 19 of `/proc/thread-self/stat`).
    fn nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn rounds_run_at_the_lowest_cpu_priority_and_so_do_their_threads() {
        let before = nice();
        let (own, spawned) = super::in_background(|| (nice(), std::thread::spawn(nice).join().unwrap())).await.unwrap();
        assert_eq!((own, spawned), (19, 19));
        assert_eq!(nice(), before, "the caller keeps its priority");
    }
}
