//! The embedded engine and local state, in one fjall (LSM) database.
//!
//! Engine streams: `backlog` (tx bodies by partition and sequence number), `blocks` (signed
//! headers by height) and `votes`. With the embedded engine these keyspaces *are* the engine
//! (the backlog is fsynced before the HTTP 202); with JetStream they are a local copy written
//! by the stream followers, in stream order (`engine.rs`). Local state (rebuilt from the
//! streams): committed transactions, outputs, spends, per-key and per-asset indexes, word
//! indexes for asset/metadata search, and a running digest of every decision applied.
//!
//! Why an LSM: every committed transaction writes ~8 index entries under random keys (hashes,
//! public keys). A copy-on-write B-tree (redb, tried first) rewrote thousands of pages per
//! block and slowed from 15 to 85 ms per 1000-tx block by 40k transactions; fjall appends
//! them to its journal and memtables instead (about 14 ms per block, flat).
//!
//! Durability: backlog batches are fsynced (`SyncData`) before they are acknowledged. Every
//! other batch only reaches the OS; fjall has one journal, so the next backlog fsync persists
//! them too, in order, and a crash loses at most work that is redone from the backlog.

use crate::block::{Block, Decision, Vote};
use crate::tx::{OutputRef, Transaction};
use crate::validation::{LedgerView, OutputInfo};
use anyhow::{Context, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::Value;
use sha3::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest memtable per keyspace before it is flushed to a sorted table. fjall's default,
/// 64 MiB, made every insert and point read walk a skiplist of up to 64 MiB (cache misses at
/// each level: 27 % of the node's CPU at 150k transactions, `perf`) and let 15 keyspaces hold
/// up to ~1 GiB of memtables; smaller ones keep both bounded (docs/performance.md).
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Journal kept before the keyspaces that pin its oldest file are flushed. fjall's default,
/// 512 MiB, was a quarter of the data directory at 1,000,000 transactions: the quiet
/// keyspaces (cursors, votes, block status) never fill a memtable, so nothing else frees the
/// journal. The busy keyspaces still flush by memtable size below this (docs/performance.md:
/// 64 MiB flushed them early too, and compaction slowed the node).
const JOURNAL_BYTES: u64 = 192 * 1024 * 1024;

/// Flushed tables gathered in level 0 of an id-keyed index keyspace (keyed by transaction ids,
/// or by a term or key followed by one) before they are merged down. Every table flushed from
/// such a keyspace spans the whole key range, so each merge rewrites all of the level below,
/// and that level grows with the ledger. fjall's default, 4; 8 carries twice the new data per
/// rewrite: compaction fell from ~26 to ~18 µs per transaction over a 1,000,000-transaction
/// ledger, while a point read that misses probes up to 8 tables' filters instead of 4
/// (docs/performance.md, ninth pass). `tx_seq`, read twice per submission, keeps the default.
/// Fixed when a keyspace is created; a store created before keeps 4.
const INDEX_L0_TABLES: u8 = 8;

/// The store's layout version, kept in `meta` under [`FORMAT_KEY`]. 2: ids (transactions,
/// assets) in keys and values as their 32 bytes; 1 (unmarked) held them as 64-character hex.
const FORMAT: u64 = 2;
const FORMAT_KEY: &str = "store_format";

/// Cursor names in the `meta` keyspace.
pub mod cursor {
    /// Per partition (`backlog_next.<p>`): next backlog sequence number held locally.
    pub const BACKLOG_NEXT: &str = "backlog_next";
    /// Per partition (`backlog_msg.<p>`, JetStream): stream sequence of the last backlog
    /// message copied (a message carries a group commit of several transactions).
    pub const BACKLOG_MSG: &str = "backlog_msg";
    /// Per partition (`built_upto.<p>`): next backlog sequence number not yet in a block.
    pub const BUILT_UPTO: &str = "built_upto";
    /// Next block height.
    pub const BLOCK_NEXT: &str = "block_next";
    /// Next height this node votes on.
    pub const VOTED: &str = "voted";
    /// Next height whose decision is applied to state.
    pub const APPLIED: &str = "applied";
    /// Committed transactions.
    pub const COMMITTED: &str = "committed";
    /// Number of votes held locally (the votes stream's sequence, for its follower).
    pub const VOTES_NEXT: &str = "votes_next";
    /// SHA3-256 chained over every applied decision (height, verdict, tx ids).
    pub const DIGEST: &str = "digest";

    /// The name of a per-partition cursor.
    pub fn of(name: &str, partition: u32) -> String {
        format!("{name}.{partition}")
    }
}

/// The database handle; share it behind an `Arc`.
pub struct Store {
    db: Database,
    /// `txid (32 bytes) ‖ canonical tx JSON` by `partition (be32) ‖ seq (be64)`: readers get
    /// ids unparsed. (Ids below are the 32 bytes of a transaction or asset id, see [`bin`].)
    backlog: Keyspace,
    /// txid → `partition ‖ seq` of its latest backlog entry.
    tx_seq: Keyspace,
    /// txid → height of the latest block holding it.
    tx_block: Keyspace,
    blocks: Keyspace,
    block_ids: Keyspace,
    block_status: Keyspace,
    votes: Keyspace,
    meta: Keyspace,
    /// txid → height of the VALID block that committed it.
    valid_txs: Keyspace,
    /// `txid ‖ index (be32)` → amount, asset id, condition (DER).
    outputs: Keyspace,
    /// `txid ‖ index (be32)` → txid of the spender.
    spent: Keyspace,
    /// `pubkey (base58) \0 txid ‖ index (be32)` → empty
    key_outputs: Keyspace,
    /// `asset_id ‖ txid` → empty, for TRANSFERs (a CREATE is found by its outputs; stores
    /// written before that also hold a CREATE as `asset_id` alone, which readers skip).
    asset_txs: Keyspace,
    /// `word \0 txid` → empty
    asset_words: Keyspace,
    /// `word \0 txid` → empty
    meta_words: Keyspace,
    /// Serializes the backlog's read-modify-write (dedup and sequence numbers).
    backlog_lock: Mutex<()>,
    /// Where the store lives (for the failure message).
    path: std::path::PathBuf,
    /// The last I/O error fjall reported (the cause of a later [`Store::failure`]).
    last_io_error: Mutex<Option<String>>,
    /// Set once fjall refuses every write (see [`Store::note_error`]).
    failure: std::sync::OnceLock<String>,
}

fn status_code(d: Decision) -> u8 {
    match d {
        Decision::Undecided => 0,
        Decision::Valid => 1,
        Decision::Invalid => 2,
    }
}

fn decision(code: u8) -> Decision {
    match code {
        1 => Decision::Valid,
        2 => Decision::Invalid,
        _ => Decision::Undecided,
    }
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn backlog_key(partition: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&partition.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn from_be(b: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(b.try_into().context("corrupt counter record")?))
}

/// A transaction, block or asset id (64 lower-case hex characters) as the 32 bytes it
/// encodes: keys and values hold ids in binary, half the bytes of the text (every committed
/// transaction's id appears in about eight entries). `None` for text that is no such id (no
/// record can have it).
fn bin(id: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (crate::tx::is_hex64(id) && hex::decode_to_slice(id, &mut out).is_ok()).then_some(out)
}

/// [`bin`] for ids this node produced or validated (a transaction's, its asset's): always
/// 64 lower-case hex characters.
fn bin_of(id: &str) -> [u8; 32] {
    bin(id).unwrap_or_else(|| panic!("not a validated id: {id:?}"))
}

/// An output's key: transaction id (32 bytes) ‖ index (be32); ordered by transaction.
fn output_key(txid: &[u8; 32], index: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(txid);
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}

/// [`output_key`] of a reference, which may name no possible output (from a request).
fn output_key_of(r: &OutputRef) -> Option<[u8; 36]> {
    bin(&r.txid).map(|txid| output_key(&txid, r.index))
}

fn output_ref(k: &[u8]) -> Result<OutputRef> {
    anyhow::ensure!(k.len() == 36, "corrupt output key");
    Ok(OutputRef { txid: hex::encode(&k[..32]), index: u32::from_be_bytes(k[32..].try_into()?) })
}

/// `term \0 suffix`: an index entry under a text term (a public key, a word).
fn pair(term: &str, suffix: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(term.len() + 1 + suffix.len());
    v.extend_from_slice(term.as_bytes());
    v.push(0);
    v.extend_from_slice(suffix);
    v
}

fn record(id: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + body.len());
    v.extend_from_slice(id);
    v.extend_from_slice(body);
    v
}

fn split_record(v: &[u8]) -> Result<([u8; 32], &[u8])> {
    anyhow::ensure!(v.len() >= 32, "corrupt backlog record");
    Ok((v[..32].try_into()?, &v[32..]))
}

/// Entries of one write batch, written in key order per keyspace. A memtable is a skiplist, and a
/// block's keys (hashes, public keys) are random: inserted in sorted order, each search follows
/// the path the previous one left in the cache (docs/performance.md). The sort is stable, so a
/// key written twice keeps its last value.
#[derive(Default)]
struct Sorted<'a> {
    items: Vec<(&'a Keyspace, Vec<u8>, Vec<u8>)>,
}

impl<'a> Sorted<'a> {
    fn insert(&mut self, ks: &'a Keyspace, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.items.push((ks, key.into(), value.into()));
    }

    fn write_into(mut self, batch: &mut fjall::OwnedWriteBatch) {
        self.items.sort_by(|a, b| (std::ptr::from_ref(a.0) as usize, &a.1).cmp(&(std::ptr::from_ref(b.0) as usize, &b.1)));
        for (ks, k, v) in self.items {
            batch.insert(ks, k, v);
        }
    }
}

/// An [`OutputInfo`] as stored: amount (le64) ‖ asset id (32 bytes) ‖ condition (DER).
fn encode_output(amount: u64, asset_id: &[u8; 32], condition: &crate::cc::Condition) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 32 + 48);
    v.extend_from_slice(&amount.to_le_bytes());
    v.extend_from_slice(asset_id);
    v.extend_from_slice(&condition.to_der());
    v
}

/// The asset id (32 bytes) of an output as stored, without decoding its condition.
fn output_asset(b: &[u8]) -> Option<&[u8]> {
    b.get(8..40)
}

fn decode_output(b: &[u8]) -> Option<OutputInfo> {
    let amount = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let asset_id = hex::encode(output_asset(b)?);
    let condition = crate::cc::Condition::parse_der(b.get(40..)?)?;
    Some(OutputInfo { condition, amount, asset_id })
}

/// Lower-cased alphanumeric words of every string value in `v` (the search index terms).
pub fn words(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            for w in s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty() && w.len() <= 64) {
                let w = w.to_lowercase();
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| words(x, out)),
        Value::Object(m) => m.values().for_each(|x| words(x, out)),
        _ => {}
    }
}

/// Second halves of the keys stored under `prefix` (a term and its `\0`, or a binary id).
fn suffixes(ks: &Keyspace, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for item in ks.prefix(prefix) {
        out.push(item.key()?[prefix.len()..].to_vec());
    }
    Ok(out)
}

/// The transaction ids (hex) of [`suffixes`] that are binary ids.
fn id_suffixes(ks: &Keyspace, prefix: &[u8]) -> Result<Vec<String>> {
    suffixes(ks, prefix)?.into_iter().map(|s| if s.len() == 32 { Ok(hex::encode(s)) } else { anyhow::bail!("corrupt word index entry") }).collect()
}

impl Store {
    /// Where the database lives inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("store")
    }

    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating data directory {}", path.display()))?;
        let db = Database::builder(path).max_journaling_size(JOURNAL_BYTES).open().with_context(|| {
            format!("opening database {} (is another cairn process using it? stop it or pick another --data-dir)", path.display())
        })?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let ks = |name: &str| db.keyspace(name, options).with_context(|| format!("opening keyspace {name}"));
        let index = |name: &str| {
            let index_options = || options().compaction_strategy(std::sync::Arc::new(fjall::compaction::Leveled::default().with_l0_threshold(INDEX_L0_TABLES)));
            db.keyspace(name, index_options).with_context(|| format!("opening keyspace {name}"))
        };
        let store = Store {
            backlog: ks("backlog")?,
            tx_seq: ks("tx_seq")?,
            tx_block: index("tx_block")?,
            blocks: ks("blocks")?,
            block_ids: ks("block_ids")?,
            block_status: ks("block_status")?,
            votes: ks("votes")?,
            meta: ks("meta")?,
            valid_txs: index("valid_txs")?,
            outputs: index("outputs")?,
            spent: index("spent")?,
            key_outputs: index("key_outputs")?,
            asset_txs: index("asset_txs")?,
            asset_words: index("asset_words")?,
            meta_words: index("metadata_words")?,
            backlog_lock: Mutex::new(()),
            path: path.to_path_buf(),
            last_io_error: Mutex::new(None),
            failure: std::sync::OnceLock::new(),
            db,
        };
        store.check_format(path)?;
        Ok(store)
    }

    /// Looks at an error a store call returned. fjall "poisons" the database after a failed
    /// journal write or fsync (a full disk, a failing device) and refuses every write from then
    /// on, so no retry can succeed: this records that, with the I/O error that caused it, for
    /// the node to stop with what to do ([`Store::failure`]) instead of answering 503 forever.
    pub fn note_error(&self, e: &anyhow::Error) {
        for cause in e.chain() {
            match cause.downcast_ref::<fjall::Error>() {
                Some(fjall::Error::Io(io)) => *self.last_io_error.lock().expect("store error lock") = Some(io.to_string()),
                Some(fjall::Error::Poisoned) => {
                    let why = self.last_io_error.lock().expect("store error lock").clone().unwrap_or_else(|| "see the errors logged before this one".into());
                    self.failure.get_or_init(|| {
                        format!(
                            "the local store at {} refuses all writes after a failed write ({why}); if the disk is full, free space there; then start the node again. \
                             Every transaction acknowledged with 202 is durable and commits after the restart",
                            self.path.display()
                        )
                    });
                }
                _ => {}
            }
        }
    }

    /// Why the store can no longer write, once [`Store::note_error`] saw it poisoned.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Marks a new store with [`FORMAT`]; refuses a store of another layout with what to do.
    fn check_format(&self, path: &Path) -> Result<()> {
        match self.meta.get(FORMAT_KEY)? {
            Some(v) if from_be(&v)? == FORMAT => Ok(()),
            None if self.meta.is_empty()? && self.backlog.is_empty()? => Ok(self.meta.insert(FORMAT_KEY, be(FORMAT))?),
            found => {
                let version = found.map(|v| from_be(&v)).transpose()?.unwrap_or(1);
                anyhow::bail!(
                    "{} holds a ledger in store format {version}, and this cairn reads format {FORMAT} (format 1, before binary ids, kept ids as hex text). \
                     With the JetStream engine the node rebuilds this local copy from the streams: stop it, remove that directory and start it again. \
                     With the embedded engine this directory is the ledger: keep using the cairn that wrote it, or start a new ledger with another --data-dir",
                    path.display()
                )
            }
        }
    }

    /// Reads a cursor (0 when unset).
    pub fn cursor(&self, name: &str) -> Result<u64> {
        match self.meta.get(name)? {
            Some(v) => from_be(&v),
            None => Ok(0),
        }
    }

    /// Reads a per-partition cursor (0 when unset).
    pub fn partition_cursor(&self, name: &str, partition: u32) -> Result<u64> {
        self.cursor(&cursor::of(name, partition))
    }

    /// Sets a cursor (not fsynced; see the module doc).
    pub fn set_cursor(&self, name: &str, value: u64) -> Result<()> {
        self.meta.insert(name, be(value))?;
        Ok(())
    }

    /// Embedded engine: appends transactions to a partition in one fsynced batch (group
    /// commit); a tx already in the backlog is not written again (dedup by id), unless
    /// `requeue` (the txs of an invalid block get one more pass through the block builder).
    pub fn append_backlog(&self, partition: u32, txs: &[(String, Vec<u8>)], requeue: bool) -> Result<()> {
        let _guard = self.backlog_lock.lock().expect("backlog lock");
        let mut next = self.partition_cursor(cursor::BACKLOG_NEXT, partition)?;
        let mut fresh = std::collections::HashSet::new();
        let mut entries = Vec::with_capacity(txs.len());
        for (id, body) in txs {
            if !requeue && (!fresh.insert(id.as_str()) || self.in_backlog(id)?) {
                continue;
            }
            entries.push((next, id.as_str(), body.as_slice()));
            next += 1;
        }
        self.insert_backlog(partition, &entries, true, requeue, None)
    }

    /// Writes backlog entries `(seq, txid, body)` of one partition at the given sequence
    /// numbers and moves the partition's cursor past them (and sets `cursor_too`, atomically).
    /// With `requeued` (entries that return after an invalid block) a transaction loses its
    /// link to that block; every transaction points to its newest entry.
    pub fn insert_backlog(&self, partition: u32, entries: &[(u64, &str, &[u8])], durable: bool, requeued: bool, cursor_too: Option<(&str, u64)>) -> Result<()> {
        let mut batch = self.db.batch();
        if let Some((name, value)) = cursor_too {
            batch.insert(&self.meta, name, be(value));
        }
        let Some(last) = entries.last() else {
            batch.commit()?;
            return Ok(());
        };
        if durable {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        let mut ids = Sorted::default();
        for (seq, id, body) in entries {
            let txid = bin(id).with_context(|| format!("backlog entry id {id:?} is not 64 lower-case hex characters"))?;
            if let Some(h) = if requeued { self.tx_block.get(txid)? } else { None } {
                if self.block_status(from_be(&h)?)? == Some(Decision::Invalid) {
                    batch.remove(&self.tx_block, txid);
                }
            }
            let key = backlog_key(partition, *seq);
            batch.insert(&self.backlog, key, record(&txid, body));
            ids.insert(&self.tx_seq, txid, key);
        }
        ids.write_into(&mut batch);
        batch.insert(&self.meta, cursor::of(cursor::BACKLOG_NEXT, partition), be(last.0 + 1));
        batch.commit()?;
        Ok(())
    }

    /// The value under a transaction id in `ks`; `None` also for text that is no id.
    fn by_id(ks: &Keyspace, txid: &str) -> Result<Option<fjall::Slice>> {
        Ok(match bin(txid) {
            Some(k) => ks.get(k)?,
            None => None,
        })
    }

    /// True if a transaction with this id was ever accepted into the backlog.
    pub fn in_backlog(&self, txid: &str) -> Result<bool> {
        Ok(bin(txid).map(|k| self.tx_seq.contains_key(k)).transpose()?.unwrap_or(false))
    }

    /// Up to `limit` entries `(seq, txid, body)` of a partition from sequence `from` on.
    pub fn backlog_from(&self, partition: u32, from: u64, limit: usize) -> Result<Vec<(u64, String, Vec<u8>)>> {
        self.backlog_range(partition, from, limit, |seq, id, body| (seq, hex::encode(id), body.to_vec()))
    }

    /// Up to `limit` entries `(seq, txid)` of a partition from sequence `from` on: what the
    /// block builder needs (a block names its transactions; copying the bodies out was most of
    /// the builder's work).
    pub fn backlog_ids(&self, partition: u32, from: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        self.backlog_range(partition, from, limit, |seq, id, _| (seq, hex::encode(id)))
    }

    fn backlog_range<T>(&self, partition: u32, from: u64, limit: usize, f: impl Fn(u64, &[u8], &[u8]) -> T) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.backlog.range(backlog_key(partition, from)..backlog_key(partition, u64::MAX)).take(limit) {
            let (k, v) = item.into_inner()?;
            let (id, body) = split_record(&v)?;
            out.push(f(from_be(&k[4..])?, &id, body));
        }
        Ok(out)
    }

    /// The current body of a transaction (latest backlog entry for its id).
    pub fn tx_body(&self, txid: &str) -> Result<Option<Vec<u8>>> {
        let Some(key) = Self::by_id(&self.tx_seq, txid)? else { return Ok(None) };
        match self.backlog.get(key)? {
            Some(v) => Ok(Some(split_record(&v)?.1.to_vec())),
            None => Ok(None),
        }
    }

    /// Stores a block at `height` and moves the block cursor, atomically. A `trusted` block
    /// (signed by a keyring member) also links its transactions to it and moves its
    /// partition's builder cursor past what it consumed; an outsider's block is kept only to
    /// be voted down, so it can neither hide transactions from the builders nor relabel them.
    pub fn insert_block(&self, height: u64, block: &Block, trusted: bool) -> Result<()> {
        let mut batch = self.db.batch();
        batch.insert(&self.blocks, be(height), crate::block::to_bytes(block));
        batch.insert(&self.block_ids, block.id.as_str(), be(height));
        batch.insert(&self.block_status, be(height), [status_code(Decision::Undecided)]);
        batch.insert(&self.meta, cursor::BLOCK_NEXT, be(height + 1));
        if trusted {
            let p = block.block.partition;
            let built = self.partition_cursor(cursor::BUILT_UPTO, p)?.max(block.block.range[1].saturating_add(1));
            let mut ids = Sorted::default();
            for id in &block.block.transactions {
                // A trusted block's ids were checked by its creator: an id that is not one
                // would make the block invalid anyway, and then it needs no link.
                if let Some(k) = bin(id) {
                    ids.insert(&self.tx_block, k, be(height));
                }
            }
            ids.write_into(&mut batch);
            batch.insert(&self.meta, cursor::of(cursor::BUILT_UPTO, p), be(built));
        }
        batch.commit()?;
        Ok(())
    }

    /// Moves a partition's builder cursor without a block (everything consumed was already
    /// committed).
    pub fn skip_backlog(&self, partition: u32, built_upto: u64) -> Result<()> {
        self.set_cursor(&cursor::of(cursor::BUILT_UPTO, partition), built_upto)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        match self.blocks.get(be(height))? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).context("corrupt block record")?)),
            None => Ok(None),
        }
    }

    /// Height of the block with this id.
    pub fn block_height(&self, id: &str) -> Result<Option<u64>> {
        self.block_ids.get(id)?.map(|v| from_be(&v)).transpose()
    }

    /// The decision recorded for a block height.
    pub fn block_status(&self, height: u64) -> Result<Option<Decision>> {
        Ok(self.block_status.get(be(height))?.and_then(|v| v.first().copied()).map(decision))
    }

    /// Stores a vote for the block at `height` (one per voter: a later one replaces it) and
    /// moves the votes cursor to `next` (the votes stream's sequence after it).
    pub fn insert_vote(&self, height: u64, vote: &Vote, next: u64) -> Result<()> {
        let mut key = be(height).to_vec();
        key.extend_from_slice(vote.node_pubkey.as_bytes());
        let mut batch = self.db.batch();
        batch.insert(&self.votes, key, crate::block::to_bytes(vote));
        batch.insert(&self.meta, cursor::VOTES_NEXT, be(next));
        batch.commit()?;
        Ok(())
    }

    /// Votes cast for the block at `height`.
    pub fn votes(&self, height: u64) -> Result<Vec<Vote>> {
        let mut out = Vec::new();
        for item in self.votes.prefix(be(height)) {
            let v = item.value()?;
            out.push(serde_json::from_slice(&v).context("corrupt vote record")?);
        }
        Ok(out)
    }

    /// Records a block's decision and, when valid, applies its transactions to state, all in
    /// one atomic batch; moves the applied cursor.
    pub fn apply<T: std::borrow::Borrow<Transaction>>(&self, height: u64, decision_: Decision, txs: &[T]) -> Result<()> {
        let mut batch = self.db.batch();
        let mut digest = sha3::Sha3_256::new();
        digest.update(self.meta.get(cursor::DIGEST)?.unwrap_or_default());
        digest.update(be(height));
        digest.update([status_code(decision_)]);
        batch.insert(&self.block_status, be(height), [status_code(decision_)]);
        if decision_ == Decision::Valid {
            let mut terms = Vec::new();
            let mut sorted = Sorted::default();
            for tx in txs {
                let tx: &Transaction = tx.borrow();
                digest.update(tx.id.as_bytes());
                let txid = bin_of(&tx.id);
                // A CREATE's asset is itself.
                let asset = if tx.asset_id == tx.id { txid } else { bin_of(&tx.asset_id) };
                sorted.insert(&self.valid_txs, txid, be(height));
                for (i, o) in tx.outputs.iter().enumerate() {
                    let key = output_key(&txid, i as u32);
                    sorted.insert(&self.outputs, key, encode_output(o.amount, &asset, &o.condition));
                    for pk in &o.public_keys {
                        sorted.insert(&self.key_outputs, pair(pk, &key), Vec::new());
                    }
                }
                for input in &tx.inputs {
                    if let Some(r) = &input.fulfills {
                        sorted.insert(&self.spent, output_key(&bin_of(&r.txid), r.index), txid);
                    }
                }
                // A CREATE needs no entry: its id is the asset's, and its outputs name the
                // asset (see `txs_of_asset`). One random-keyed write fewer per CREATE.
                if asset != txid {
                    sorted.insert(&self.asset_txs, [asset, txid].concat(), Vec::new());
                }
                terms.clear();
                words(tx.asset_data(), &mut terms);
                for t in &terms {
                    sorted.insert(&self.asset_words, pair(t, &txid), Vec::new());
                }
                terms.clear();
                words(tx.metadata(), &mut terms);
                for t in &terms {
                    sorted.insert(&self.meta_words, pair(t, &txid), Vec::new());
                }
            }
            sorted.write_into(&mut batch);
            let n = self.cursor(cursor::COMMITTED)?;
            batch.insert(&self.meta, cursor::COMMITTED, be(n + txs.len() as u64));
        }
        batch.insert(&self.meta, cursor::DIGEST, digest.finalize().to_vec());
        batch.insert(&self.meta, cursor::APPLIED, be(height + 1));
        batch.commit()?;
        Ok(())
    }

    /// Height of the VALID block holding `txid`, if committed.
    pub fn committed_height(&self, txid: &str) -> Result<Option<u64>> {
        Self::by_id(&self.valid_txs, txid)?.map(|v| from_be(&v)).transpose()
    }

    /// Status as BigchainDB reports it: valid, undecided (in an undecided block) or backlog;
    /// and `invalid` for a transaction dropped with an invalid block (a requeued one loses its
    /// block link, so a link to an invalid block means it was dropped).
    pub fn tx_status(&self, txid: &str) -> Result<Option<&'static str>> {
        let Some(txid) = bin(txid) else { return Ok(None) };
        if self.valid_txs.contains_key(txid)? {
            return Ok(Some("valid"));
        }
        if let Some(h) = self.tx_block.get(txid)? {
            match self.block_status(from_be(&h)?)? {
                Some(Decision::Undecided) => return Ok(Some("undecided")),
                Some(Decision::Invalid) => return Ok(Some("invalid")),
                _ => {}
            }
        }
        Ok(self.tx_seq.contains_key(txid)?.then_some("backlog"))
    }

    /// True if the transaction was dropped with an invalid block (see [`Store::tx_status`]).
    pub fn is_dropped(&self, txid: &str) -> Result<bool> {
        Ok(self.tx_status(txid)? == Some("invalid"))
    }

    /// Heights of blocks holding `txid` (the latest block it went into).
    pub fn blocks_with_tx(&self, txid: &str) -> Result<Vec<u64>> {
        Ok(match Self::by_id(&self.tx_block, txid)? {
            Some(h) => vec![from_be(&h)?],
            None => vec![],
        })
    }

    /// Output references owned by `public_key`, filtered by spent state if asked.
    pub fn outputs_of_key(&self, public_key: &str, spent: Option<bool>) -> Result<Vec<OutputRef>> {
        let mut out = Vec::new();
        for key in suffixes(&self.key_outputs, &pair(public_key, &[]))? {
            let is_spent = self.spent.contains_key(&key)?;
            if spent.is_none_or(|want| want == is_spent) {
                out.push(output_ref(&key)?);
            }
        }
        Ok(out)
    }

    /// Committed transaction ids of an asset: its CREATE (a committed transaction whose first
    /// output names itself as the asset), then the TRANSFERs indexed under it.
    pub fn txs_of_asset(&self, asset_id: &str) -> Result<Vec<String>> {
        let Some(k) = bin(asset_id) else { return Ok(vec![]) };
        let created = self.outputs.get(output_key(&k, 0))?.is_some_and(|v| output_asset(&v) == Some(&k[..]));
        let mut txs = Vec::from_iter(created.then(|| hex::encode(k)));
        for s in suffixes(&self.asset_txs, &k)? {
            match s.len() {
                0 => {} // a store written before CREATEs went unindexed: found above
                32 => txs.push(hex::encode(s)),
                _ => anyhow::bail!("corrupt asset index entry"),
            }
        }
        Ok(txs)
    }

    /// Text search over committed asset data (`metadata == false`) or metadata: transaction
    /// ids ranked by how many query words they contain.
    pub fn search(&self, query: &str, metadata: bool, limit: usize) -> Result<Vec<String>> {
        let mut terms = Vec::new();
        words(&Value::String(query.to_string()), &mut terms);
        let ks = if metadata { &self.meta_words } else { &self.asset_words };
        let mut score: HashMap<String, usize> = HashMap::new();
        for term in &terms {
            for id in id_suffixes(ks, &pair(term, &[]))? {
                *score.entry(id).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = score.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(limit).map(|(id, _)| id).collect())
    }

    /// Backlog entries (all partitions), blocks and committed transactions (for the info
    /// endpoint).
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        let mut backlog = 0;
        for item in self.meta.prefix(format!("{}.", cursor::BACKLOG_NEXT)) {
            backlog += from_be(&item.value()?)?;
        }
        Ok((backlog, self.cursor(cursor::BLOCK_NEXT)?, self.cursor(cursor::COMMITTED)?))
    }

    /// The state digest (hex SHA3-256 chained over every decision applied; all nodes that
    /// applied the same heights hold the same digest) and the number of heights applied.
    pub fn state_digest(&self) -> Result<(String, u64)> {
        let d = self.meta.get(cursor::DIGEST)?.map(hex::encode).unwrap_or_else(|| "0".repeat(64));
        Ok((d, self.cursor(cursor::APPLIED)?))
    }
}

impl LedgerView for Store {
    fn is_committed(&self, txid: &str) -> bool {
        bin(txid).is_some_and(|k| self.valid_txs.contains_key(k).unwrap_or(false))
    }

    fn output(&self, r: &OutputRef) -> Option<OutputInfo> {
        decode_output(&self.outputs.get(output_key_of(r)?).ok()??)
    }

    fn spender(&self, r: &OutputRef) -> Option<String> {
        let by = self.spent.get(output_key_of(r)?).ok()??;
        (by.len() == 32).then(|| hex::encode(by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id-keyed indexes gather [`INDEX_L0_TABLES`] flushed tables before merging them down
    /// (fjall's default merges at 4), and a reopened store keeps that: fjall stores a
    /// keyspace's settings when it creates it.
    #[test]
    fn id_keyed_indexes_merge_level_0_only_at_8_tables_also_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = std::collections::BTreeSet::new();
        // Each round's keys spread over the whole key range, as transaction ids do.
        let mut flush = |store: &Store, round: u8| {
            for i in 0..100u8 {
                for key in [[[round, i].as_slice(), &[0; 30]].concat(), [[i, round].as_slice(), &[0; 30]].concat()] {
                    store.valid_txs.insert(key.clone(), be(1)).unwrap();
                    keys.insert(key);
                }
            }
            store.valid_txs.rotate_memtable_and_wait().unwrap();
        };
        let settle = || std::thread::sleep(std::time::Duration::from_millis(500));
        {
            let store = Store::open(dir.path()).unwrap();
            // fjall moves the first table, alone, straight to the last level; the next six stay.
            (0..7).for_each(|r| flush(&store, r));
            settle();
            assert_eq!(store.valid_txs.l0_table_count(), 6, "level 0 was merged before it held 8 tables");
        }
        let store = Store::open(dir.path()).unwrap();
        flush(&store, 7);
        settle();
        assert_eq!(store.valid_txs.l0_table_count(), 7, "after a reopen, level 0 was merged before it held 8 tables");
        flush(&store, 8);
        let merged = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            store.valid_txs.l0_table_count() < 8
        });
        assert!(merged, "8 tables in level 0 were not merged down");
        assert_eq!(store.valid_txs.len().unwrap(), keys.len(), "entries lost in the merge");
    }

    #[test]
    fn ids_are_stored_as_their_bytes_and_other_text_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = "0a".repeat(32);
        store.append_backlog(0, &[(id.clone(), b"{}".to_vec())], false).unwrap();
        assert!(store.in_backlog(&id).unwrap());
        assert_eq!(store.tx_body(&id).unwrap().as_deref(), Some(&b"{}"[..]));
        assert_eq!(store.backlog_from(0, 0, 10).unwrap(), vec![(0, id.clone(), b"{}".to_vec())]);
        assert_eq!(store.backlog_ids(0, 0, 10).unwrap(), vec![(0, id.clone())]);
        // The record holds the id's 32 bytes, not its 64 characters.
        assert_eq!(store.backlog.get(backlog_key(0, 0)).unwrap().unwrap().len(), 32 + 2);
        assert_eq!(store.tx_status(&id).unwrap(), Some("backlog"));
        // Upper-case hex, short or non-hex text is no stored id (never an error).
        for other in ["0A".repeat(32), "0a".repeat(31), "zz".repeat(32), String::new()] {
            assert!(!store.in_backlog(&other).unwrap(), "{other}");
            assert_eq!(store.tx_status(&other).unwrap(), None);
            assert_eq!(store.tx_body(&other).unwrap(), None);
            assert_eq!(store.txs_of_asset(&other).unwrap(), Vec::<String>::new());
            assert!(!store.is_committed(&other));
            assert!(store.output(&OutputRef { txid: other.clone(), index: 0 }).is_none());
        }
        // An engine entry whose id is not one is refused, not stored under a mangled key.
        assert!(store.insert_backlog(0, &[(1, "not-an-id", b"{}")], false, false, None).is_err());
    }

    #[test]
    fn an_asset_lists_its_create_then_its_transfers_with_only_transfers_indexed() {
        use crate::workload::{create_tx, transfer_tx};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = crate::crypto::Keypair::from_seed([3; 32]);
        let create = create_tx(&k, 1);
        let t1 = transfer_tx(&k, &create, "a");
        let t2 = transfer_tx(&k, &t1, "b");
        let other = create_tx(&k, 2);
        let parsed: Vec<Transaction> = [&create, &t1, &t2, &other].map(|v| Transaction::from_value(v.clone()).unwrap()).into();
        store.apply(0, Decision::Valid, &parsed).unwrap();
        let [c, t1, t2, other] = [&parsed[0].id, &parsed[1].id, &parsed[2].id, &parsed[3].id];
        let mut transfers = vec![t1.clone(), t2.clone()];
        transfers.sort();
        assert_eq!(store.txs_of_asset(c).unwrap(), [vec![c.clone()], transfers].concat());
        assert_eq!(store.txs_of_asset(other).unwrap(), vec![other.clone()]);
        // A TRANSFER's id names no asset, though the TRANSFER is committed.
        assert_eq!(store.txs_of_asset(t1).unwrap(), Vec::<String>::new());
        // Only the two TRANSFERs have index entries (one random-keyed write fewer per CREATE).
        assert_eq!(store.asset_txs.iter().count(), 2);
        // A store written before (CREATEs indexed as their id alone) lists each CREATE once.
        store.asset_txs.insert(bin_of(c), []).unwrap();
        assert_eq!(store.txs_of_asset(c).unwrap()[..1], *std::slice::from_ref(c));
        assert_eq!(store.txs_of_asset(c).unwrap().len(), 3);
    }

    #[test]
    fn a_store_of_another_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap().set_cursor(FORMAT_KEY, 1).unwrap();
        let e = format!("{:#}", Store::open(dir.path()).err().expect("format 1 refused"));
        assert!(e.contains("store format 1") && e.contains(&dir.path().display().to_string()) && e.contains("remove that directory"), "{e}");

        // Data but no mark: written before the mark existed (format 1).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.meta.remove(FORMAT_KEY).unwrap();
        store.set_cursor(cursor::APPLIED, 3).unwrap();
        drop(store);
        let e = format!("{:#}", Store::open(dir.path()).err().expect("unmarked store with data refused"));
        assert!(e.contains("store format 1"), "{e}");

        // A new store is marked, and opens again.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        assert_eq!(Store::open(dir.path()).unwrap().cursor(FORMAT_KEY).unwrap(), FORMAT);
    }
}
