//! The embedded engine and local state, in one fjall (LSM) database.
//!
//! Engine streams (what a JetStream cluster holds in a federation): `backlog` (tx bodies by
//! sequence number, written once, durable before the HTTP 202), `blocks` (signed headers by
//! height) and `votes`. Local state (rebuildable from the streams): committed transactions,
//! outputs, spends, per-key and per-asset indexes, and word indexes for asset/metadata search.
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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Cursor names in the `meta` keyspace.
pub mod cursor {
    /// Next backlog sequence number to assign.
    pub const BACKLOG_NEXT: &str = "backlog_next";
    /// Next backlog sequence number the block builder will consume.
    pub const BUILT_UPTO: &str = "built_upto";
    /// Next block height.
    pub const BLOCK_NEXT: &str = "block_next";
    /// Next height this node votes on.
    pub const VOTED: &str = "voted";
    /// Next height whose decision is applied to state.
    pub const APPLIED: &str = "applied";
    /// Committed transactions.
    pub const COMMITTED: &str = "committed";
}

/// The database handle; share it behind an `Arc`.
pub struct Store {
    db: Database,
    /// `txid (64 ascii) ‖ canonical tx JSON` by sequence number: readers get ids unparsed.
    backlog: Keyspace,
    tx_seq: Keyspace,
    tx_block: Keyspace,
    blocks: Keyspace,
    block_ids: Keyspace,
    block_status: Keyspace,
    votes: Keyspace,
    meta: Keyspace,
    valid_txs: Keyspace,
    outputs: Keyspace,
    spent: Keyspace,
    /// `pubkey \0 txid:index` → empty
    key_outputs: Keyspace,
    /// `asset_id \0 txid` → empty
    asset_txs: Keyspace,
    /// `word \0 txid` → empty
    asset_words: Keyspace,
    /// `word \0 txid` → empty
    meta_words: Keyspace,
    /// Serializes the backlog's read-modify-write (dedup and sequence numbers).
    backlog_lock: Mutex<()>,
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

fn from_be(b: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(b.try_into().context("corrupt counter record")?))
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + 1 + b.len());
    v.extend_from_slice(a.as_bytes());
    v.push(0);
    v.extend_from_slice(b.as_bytes());
    v
}

fn record(id: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(id.len() + body.len());
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(body);
    v
}

fn split_record(v: &[u8]) -> Result<(&str, &[u8])> {
    anyhow::ensure!(v.len() >= 64, "corrupt backlog record");
    Ok((std::str::from_utf8(&v[..64]).context("corrupt backlog record")?, &v[64..]))
}

fn encode_output(o: &OutputInfo) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 64 + 48);
    v.extend_from_slice(&o.amount.to_le_bytes());
    v.extend_from_slice(o.asset_id.as_bytes());
    v.extend_from_slice(&o.condition.to_der());
    v
}

fn decode_output(b: &[u8]) -> Option<OutputInfo> {
    let amount = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let asset_id = std::str::from_utf8(b.get(8..72)?).ok()?.to_string();
    let condition = crate::cc::Condition::parse_der(b.get(72..)?)?;
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

/// Second halves of the `prefix \0 value` keys stored under `prefix`.
fn suffixes(ks: &Keyspace, prefix: &str) -> Result<Vec<String>> {
    let mut p = prefix.as_bytes().to_vec();
    p.push(0);
    let mut out = Vec::new();
    for item in ks.prefix(&p) {
        let key = item.key()?;
        out.push(String::from_utf8_lossy(&key[p.len()..]).into_owned());
    }
    Ok(out)
}

impl Store {
    /// Where the database lives inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("store")
    }

    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating data directory {}", path.display()))?;
        let db = Database::builder(path).open().with_context(|| {
            format!("opening database {} (is another cairn process using it? stop it or pick another --data-dir)", path.display())
        })?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).with_context(|| format!("opening keyspace {name}"));
        Ok(Store {
            backlog: ks("backlog")?,
            tx_seq: ks("tx_seq")?,
            tx_block: ks("tx_block")?,
            blocks: ks("blocks")?,
            block_ids: ks("block_ids")?,
            block_status: ks("block_status")?,
            votes: ks("votes")?,
            meta: ks("meta")?,
            valid_txs: ks("valid_txs")?,
            outputs: ks("outputs")?,
            spent: ks("spent")?,
            key_outputs: ks("key_outputs")?,
            asset_txs: ks("asset_txs")?,
            asset_words: ks("asset_words")?,
            meta_words: ks("metadata_words")?,
            backlog_lock: Mutex::new(()),
            db,
        })
    }

    /// Reads a cursor (0 when unset).
    pub fn cursor(&self, name: &str) -> Result<u64> {
        match self.meta.get(name)? {
            Some(v) => from_be(&v),
            None => Ok(0),
        }
    }

    /// Appends transactions to the backlog in one fsynced batch (group commit) and returns
    /// their sequence numbers; a tx already in the backlog keeps its number and is not
    /// written again (dedup by id).
    pub fn append_backlog(&self, txs: &[(String, Vec<u8>)]) -> Result<Vec<u64>> {
        let _guard = self.backlog_lock.lock().expect("backlog lock");
        let mut next = self.cursor(cursor::BACKLOG_NEXT)?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut seqs = Vec::with_capacity(txs.len());
        let mut fresh: HashMap<&str, u64> = HashMap::new();
        for (id, body) in txs {
            if let Some(s) = fresh.get(id.as_str()) {
                seqs.push(*s);
                continue;
            }
            if let Some(existing) = self.tx_seq.get(id)? {
                seqs.push(from_be(&existing)?);
                continue;
            }
            batch.insert(&self.backlog, be(next), record(id, body));
            batch.insert(&self.tx_seq, id.as_str(), be(next));
            fresh.insert(id, next);
            seqs.push(next);
            next += 1;
        }
        batch.insert(&self.meta, cursor::BACKLOG_NEXT, be(next));
        batch.commit()?;
        Ok(seqs)
    }

    /// Re-appends transactions of an invalid block so they get another chance (new sequence
    /// numbers, so the block builder sees them again).
    pub fn requeue(&self, txs: &[(String, Vec<u8>)]) -> Result<()> {
        let _guard = self.backlog_lock.lock().expect("backlog lock");
        let mut next = self.cursor(cursor::BACKLOG_NEXT)?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (id, body) in txs {
            batch.insert(&self.backlog, be(next), record(id, body));
            batch.insert(&self.tx_seq, id.as_str(), be(next));
            batch.remove(&self.tx_block, id.as_str());
            next += 1;
        }
        batch.insert(&self.meta, cursor::BACKLOG_NEXT, be(next));
        batch.commit()?;
        Ok(())
    }

    /// True if a transaction with this id was ever accepted into the backlog.
    pub fn in_backlog(&self, txid: &str) -> Result<bool> {
        Ok(self.tx_seq.contains_key(txid)?)
    }

    /// Up to `limit` backlog entries `(seq, txid, body)` from sequence `from` on.
    pub fn backlog_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.backlog.range(be(from)..).take(limit) {
            let (k, v) = item.into_inner()?;
            let (id, body) = split_record(&v)?;
            out.push((from_be(&k)?, id.to_string(), body.to_vec()));
        }
        Ok(out)
    }

    /// The current body of a transaction (latest backlog entry for its id).
    pub fn tx_body(&self, txid: &str) -> Result<Option<Vec<u8>>> {
        let Some(seq) = self.tx_seq.get(txid)? else { return Ok(None) };
        match self.backlog.get(seq)? {
            Some(v) => Ok(Some(split_record(&v)?.1.to_vec())),
            None => Ok(None),
        }
    }

    /// Appends a block and moves the builder cursor past the backlog it consumed, atomically.
    /// Only the block builder calls this, so the height needs no lock.
    pub fn append_block(&self, block: &Block, built_upto: u64) -> Result<u64> {
        let height = self.cursor(cursor::BLOCK_NEXT)?;
        let mut batch = self.db.batch();
        batch.insert(&self.blocks, be(height), crate::block::to_bytes(block));
        batch.insert(&self.block_ids, block.id.as_str(), be(height));
        batch.insert(&self.block_status, be(height), [status_code(Decision::Undecided)]);
        for id in &block.block.transactions {
            batch.insert(&self.tx_block, id.as_str(), be(height));
        }
        batch.insert(&self.meta, cursor::BLOCK_NEXT, be(height + 1));
        batch.insert(&self.meta, cursor::BUILT_UPTO, be(built_upto));
        batch.commit()?;
        Ok(height)
    }

    /// Moves the builder cursor without a block (everything consumed was already committed).
    pub fn skip_backlog(&self, built_upto: u64) -> Result<()> {
        self.meta.insert(cursor::BUILT_UPTO, be(built_upto))?;
        Ok(())
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

    /// Appends a vote and, when it is this node's, moves the voted cursor.
    pub fn append_vote(&self, height: u64, vote: &Vote, own_next: Option<u64>) -> Result<()> {
        let mut key = be(height).to_vec();
        key.extend_from_slice(vote.node_pubkey.as_bytes());
        let mut batch = self.db.batch();
        batch.insert(&self.votes, key, crate::block::to_bytes(vote));
        if let Some(next) = own_next {
            batch.insert(&self.meta, cursor::VOTED, be(next));
        }
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
        batch.insert(&self.block_status, be(height), [status_code(decision_)]);
        if decision_ == Decision::Valid {
            let mut terms = Vec::new();
            for tx in txs {
                let tx: &Transaction = tx.borrow();
                batch.insert(&self.valid_txs, tx.id.as_str(), be(height));
                for (i, o) in tx.outputs.iter().enumerate() {
                    let key = OutputRef { txid: tx.id.clone(), index: i as u32 }.key();
                    let info = OutputInfo { condition: o.condition.clone(), amount: o.amount, asset_id: tx.asset_id.clone() };
                    batch.insert(&self.outputs, key.as_str(), encode_output(&info));
                    for pk in &o.public_keys {
                        batch.insert(&self.key_outputs, pair(pk, &key), []);
                    }
                }
                for input in &tx.inputs {
                    if let Some(r) = &input.fulfills {
                        batch.insert(&self.spent, r.key(), tx.id.as_str());
                    }
                }
                batch.insert(&self.asset_txs, pair(&tx.asset_id, &tx.id), []);
                terms.clear();
                words(tx.asset_data(), &mut terms);
                for t in &terms {
                    batch.insert(&self.asset_words, pair(t, &tx.id), []);
                }
                terms.clear();
                words(tx.metadata(), &mut terms);
                for t in &terms {
                    batch.insert(&self.meta_words, pair(t, &tx.id), []);
                }
            }
            let n = self.cursor(cursor::COMMITTED)?;
            batch.insert(&self.meta, cursor::COMMITTED, be(n + txs.len() as u64));
        }
        batch.insert(&self.meta, cursor::APPLIED, be(height + 1));
        batch.commit()?;
        Ok(())
    }

    /// Height of the VALID block holding `txid`, if committed.
    pub fn committed_height(&self, txid: &str) -> Result<Option<u64>> {
        self.valid_txs.get(txid)?.map(|v| from_be(&v)).transpose()
    }

    /// Status as BigchainDB reports it: valid, undecided (in an undecided block) or backlog;
    /// and `invalid` for a transaction dropped with an invalid block (a requeued one loses its
    /// block link, so a link to an invalid block means it was dropped).
    pub fn tx_status(&self, txid: &str) -> Result<Option<&'static str>> {
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
        Ok(match self.tx_block.get(txid)? {
            Some(h) => vec![from_be(&h)?],
            None => vec![],
        })
    }

    /// Output references owned by `public_key`, filtered by spent state if asked.
    pub fn outputs_of_key(&self, public_key: &str, spent: Option<bool>) -> Result<Vec<OutputRef>> {
        let mut out = Vec::new();
        for key in suffixes(&self.key_outputs, public_key)? {
            let is_spent = self.spent.contains_key(&key)?;
            if spent.is_none_or(|want| want == is_spent) {
                let (txid, idx) = key.split_once(':').context("corrupt output key")?;
                out.push(OutputRef { txid: txid.to_string(), index: idx.parse()? });
            }
        }
        Ok(out)
    }

    /// Committed transaction ids of an asset.
    pub fn txs_of_asset(&self, asset_id: &str) -> Result<Vec<String>> {
        suffixes(&self.asset_txs, asset_id)
    }

    /// Text search over committed asset data (`metadata == false`) or metadata: transaction
    /// ids ranked by how many query words they contain.
    pub fn search(&self, query: &str, metadata: bool, limit: usize) -> Result<Vec<String>> {
        let mut terms = Vec::new();
        words(&Value::String(query.to_string()), &mut terms);
        let ks = if metadata { &self.meta_words } else { &self.asset_words };
        let mut score: HashMap<String, usize> = HashMap::new();
        for term in &terms {
            for id in suffixes(ks, term)? {
                *score.entry(id).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = score.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(limit).map(|(id, _)| id).collect())
    }

    /// Backlog entries, blocks and committed transactions (for the info endpoint).
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        Ok((self.cursor(cursor::BACKLOG_NEXT)?, self.cursor(cursor::BLOCK_NEXT)?, self.cursor(cursor::COMMITTED)?))
    }
}

impl LedgerView for Store {
    fn is_committed(&self, txid: &str) -> bool {
        self.valid_txs.contains_key(txid).unwrap_or(false)
    }

    fn output(&self, r: &OutputRef) -> Option<OutputInfo> {
        decode_output(&self.outputs.get(r.key()).ok()??)
    }

    fn spender(&self, r: &OutputRef) -> Option<String> {
        Some(String::from_utf8_lossy(&self.spent.get(r.key()).ok()??).into_owned())
    }
}
