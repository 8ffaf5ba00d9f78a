//! The embedded engine and local state, in one redb database.
//!
//! Engine streams (what a JetStream cluster holds in a federation): `backlog` (tx bodies by
//! sequence number, written once, durable before the HTTP 202), `blocks` (signed headers by
//! height) and `votes`. Local state (rebuildable from the streams): committed transactions,
//! outputs, spends, per-key and per-asset indexes, and word indexes for asset/metadata search.
//! Backlog appends are durable; later writes use eventual durability because a crash can only
//! lose work that is redone from the durable backlog on restart.

use crate::block::{Block, Decision, Vote};
use crate::tx::{OutputRef, Transaction};
use crate::validation::{LedgerView, OutputInfo};
use anyhow::{Context, Result};
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Backlog records are `txid (64 ascii) ‖ canonical tx JSON`, so readers get ids without parsing.
const BACKLOG: TableDefinition<u64, &[u8]> = TableDefinition::new("backlog");
const TX_SEQ: TableDefinition<&str, u64> = TableDefinition::new("tx_seq");
const TX_BLOCK: TableDefinition<&str, u64> = TableDefinition::new("tx_block");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_IDS: TableDefinition<&str, u64> = TableDefinition::new("block_ids");
const BLOCK_STATUS: TableDefinition<u64, u8> = TableDefinition::new("block_status");
const VOTES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("votes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VALID_TXS: TableDefinition<&str, u64> = TableDefinition::new("valid_txs");
const OUTPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("outputs");
const SPENT: TableDefinition<&str, &str> = TableDefinition::new("spent");
const KEY_OUTPUTS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("key_outputs");
const ASSET_TXS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("asset_txs");
const ASSET_WORDS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("asset_words");
const META_WORDS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("metadata_words");

/// Cursor names in the `meta` table.
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

/// The database handle; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
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
    let condition = crate::cc::Fulfillment::condition_from_der(b.get(72..)?)?;
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

impl Store {
    /// Opens (or creates) the database at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        let db = Database::create(path).with_context(|| {
            format!("opening database {} (is another cairn process using it? stop it or pick another --data-dir)", path.display())
        })?;
        let w = db.begin_write()?;
        w.open_table(BACKLOG)?;
        w.open_table(TX_SEQ)?;
        w.open_table(TX_BLOCK)?;
        w.open_table(BLOCKS)?;
        w.open_table(BLOCK_IDS)?;
        w.open_table(BLOCK_STATUS)?;
        w.open_table(VOTES)?;
        w.open_table(META)?;
        w.open_table(VALID_TXS)?;
        w.open_table(OUTPUTS)?;
        w.open_table(SPENT)?;
        w.open_multimap_table(KEY_OUTPUTS)?;
        w.open_multimap_table(ASSET_TXS)?;
        w.open_multimap_table(ASSET_WORDS)?;
        w.open_multimap_table(META_WORDS)?;
        w.commit()?;
        Ok(Store { db })
    }

    fn write_eventual(&self) -> Result<WriteTransaction> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Eventual);
        Ok(w)
    }

    /// Reads a cursor (0 when unset).
    pub fn cursor(&self, name: &str) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(META)?.get(name)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Appends transactions to the backlog in one durable commit (group commit) and returns
    /// their sequence numbers; a tx already in the backlog keeps its number and is not
    /// written again (dedup by id).
    pub fn append_backlog(&self, txs: &[(String, Vec<u8>)]) -> Result<Vec<u64>> {
        let w = self.db.begin_write()?; // durable: the HTTP 202 waits for this commit
        let mut seqs = Vec::with_capacity(txs.len());
        {
            let mut meta = w.open_table(META)?;
            let mut next = meta.get(cursor::BACKLOG_NEXT)?.map(|v| v.value()).unwrap_or(0);
            let mut backlog = w.open_table(BACKLOG)?;
            let mut ids = w.open_table(TX_SEQ)?;
            for (id, body) in txs {
                if let Some(existing) = ids.get(id.as_str())?.map(|v| v.value()) {
                    seqs.push(existing);
                    continue;
                }
                backlog.insert(next, record(id, body).as_slice())?;
                ids.insert(id.as_str(), next)?;
                seqs.push(next);
                next += 1;
            }
            meta.insert(cursor::BACKLOG_NEXT, next)?;
        }
        w.commit()?;
        Ok(seqs)
    }

    /// Re-appends transactions of an invalid block so they get another chance (new sequence
    /// numbers, so the block builder sees them again).
    pub fn requeue(&self, txs: &[(String, Vec<u8>)]) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            let mut next = meta.get(cursor::BACKLOG_NEXT)?.map(|v| v.value()).unwrap_or(0);
            let mut backlog = w.open_table(BACKLOG)?;
            let mut ids = w.open_table(TX_SEQ)?;
            let mut tx_block = w.open_table(TX_BLOCK)?;
            for (id, body) in txs {
                backlog.insert(next, record(id, body).as_slice())?;
                ids.insert(id.as_str(), next)?;
                tx_block.remove(id.as_str())?;
                next += 1;
            }
            meta.insert(cursor::BACKLOG_NEXT, next)?;
        }
        w.commit()?;
        Ok(())
    }

    /// True if a transaction with this id was ever accepted into the backlog.
    pub fn in_backlog(&self, txid: &str) -> Result<bool> {
        Ok(self.db.begin_read()?.open_table(TX_SEQ)?.get(txid)?.is_some())
    }

    /// Up to `limit` backlog entries `(seq, txid, body)` from sequence `from` on.
    pub fn backlog_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String, Vec<u8>)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BACKLOG)?;
        let mut out = Vec::new();
        for item in t.range(from..)?.take(limit) {
            let (k, v) = item?;
            let (id, body) = split_record(v.value())?;
            out.push((k.value(), id.to_string(), body.to_vec()));
        }
        Ok(out)
    }

    /// The current body of a transaction (latest backlog entry for its id).
    pub fn tx_body(&self, txid: &str) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let Some(seq) = r.open_table(TX_SEQ)?.get(txid)?.map(|v| v.value()) else { return Ok(None) };
        let t = r.open_table(BACKLOG)?;
        let v = t.get(seq)?;
        Ok(match v {
            Some(v) => Some(split_record(v.value())?.1.to_vec()),
            None => None,
        })
    }

    /// Appends a block and moves the builder cursor past the backlog it consumed, atomically.
    pub fn append_block(&self, block: &Block, built_upto: u64) -> Result<u64> {
        let w = self.write_eventual()?;
        let height;
        {
            let mut meta = w.open_table(META)?;
            height = meta.get(cursor::BLOCK_NEXT)?.map(|v| v.value()).unwrap_or(0);
            w.open_table(BLOCKS)?.insert(height, crate::block::to_bytes(block).as_slice())?;
            w.open_table(BLOCK_IDS)?.insert(block.id.as_str(), height)?;
            w.open_table(BLOCK_STATUS)?.insert(height, status_code(Decision::Undecided))?;
            let mut tx_block = w.open_table(TX_BLOCK)?;
            for id in &block.block.transactions {
                tx_block.insert(id.as_str(), height)?;
            }
            meta.insert(cursor::BLOCK_NEXT, height + 1)?;
            meta.insert(cursor::BUILT_UPTO, built_upto)?;
        }
        w.commit()?;
        Ok(height)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let v = t.get(height)?;
        Ok(match v {
            Some(b) => Some(serde_json::from_slice(b.value()).context("corrupt block record")?),
            None => None,
        })
    }

    /// Height of the block with this id.
    pub fn block_height(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.db.begin_read()?.open_table(BLOCK_IDS)?.get(id)?.map(|v| v.value()))
    }

    /// The decision recorded for a block height.
    pub fn block_status(&self, height: u64) -> Result<Option<Decision>> {
        Ok(self.db.begin_read()?.open_table(BLOCK_STATUS)?.get(height)?.map(|v| decision(v.value())))
    }

    /// Appends a vote and, when it is this node's, moves the voted cursor.
    pub fn append_vote(&self, height: u64, vote: &Vote, own_next: Option<u64>) -> Result<()> {
        let w = self.write_eventual()?;
        {
            w.open_table(VOTES)?.insert((height, vote.node_pubkey.as_str()), crate::block::to_bytes(vote).as_slice())?;
            if let Some(next) = own_next {
                w.open_table(META)?.insert(cursor::VOTED, next)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Votes cast for the block at `height`.
    pub fn votes(&self, height: u64) -> Result<Vec<Vote>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(VOTES)?;
        let mut out = Vec::new();
        for item in t.range((height, "")..(height + 1, ""))? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value()).context("corrupt vote record")?);
        }
        Ok(out)
    }

    /// Records a block's decision and, when valid, applies its transactions to state, all in
    /// one commit; moves the applied cursor.
    pub fn apply(&self, height: u64, decision_: Decision, txs: &[Transaction]) -> Result<()> {
        let w = self.write_eventual()?;
        {
            w.open_table(BLOCK_STATUS)?.insert(height, status_code(decision_))?;
            let mut meta = w.open_table(META)?;
            if decision_ == Decision::Valid {
                let mut valid = w.open_table(VALID_TXS)?;
                let mut outputs = w.open_table(OUTPUTS)?;
                let mut spent = w.open_table(SPENT)?;
                let mut by_key = w.open_multimap_table(KEY_OUTPUTS)?;
                let mut by_asset = w.open_multimap_table(ASSET_TXS)?;
                let mut asset_words = w.open_multimap_table(ASSET_WORDS)?;
                let mut meta_words = w.open_multimap_table(META_WORDS)?;
                let mut terms = Vec::new();
                for tx in txs {
                    valid.insert(tx.id.as_str(), height)?;
                    for (i, o) in tx.outputs.iter().enumerate() {
                        let key = OutputRef { txid: tx.id.clone(), index: i as u32 }.key();
                        let info = OutputInfo { condition: o.condition.clone(), amount: o.amount, asset_id: tx.asset_id.clone() };
                        outputs.insert(key.as_str(), encode_output(&info).as_slice())?;
                        for pk in &o.public_keys {
                            by_key.insert(pk.as_str(), key.as_str())?;
                        }
                    }
                    for input in &tx.inputs {
                        if let Some(r) = &input.fulfills {
                            spent.insert(r.key().as_str(), tx.id.as_str())?;
                        }
                    }
                    by_asset.insert(tx.asset_id.as_str(), tx.id.as_str())?;
                    terms.clear();
                    words(tx.asset_data(), &mut terms);
                    for t in &terms {
                        asset_words.insert(t.as_str(), tx.id.as_str())?;
                    }
                    terms.clear();
                    words(tx.metadata(), &mut terms);
                    for t in &terms {
                        meta_words.insert(t.as_str(), tx.id.as_str())?;
                    }
                }
                let n = meta.get(cursor::COMMITTED)?.map(|v| v.value()).unwrap_or(0);
                meta.insert(cursor::COMMITTED, n + txs.len() as u64)?;
            }
            meta.insert(cursor::APPLIED, height + 1)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Height of the VALID block holding `txid`, if committed.
    pub fn committed_height(&self, txid: &str) -> Result<Option<u64>> {
        Ok(self.db.begin_read()?.open_table(VALID_TXS)?.get(txid)?.map(|v| v.value()))
    }

    /// Status as BigchainDB reports it: valid, undecided (in an undecided block) or backlog.
    pub fn tx_status(&self, txid: &str) -> Result<Option<&'static str>> {
        let r = self.db.begin_read()?;
        if r.open_table(VALID_TXS)?.get(txid)?.is_some() {
            return Ok(Some("valid"));
        }
        if let Some(h) = r.open_table(TX_BLOCK)?.get(txid)?.map(|v| v.value()) {
            if r.open_table(BLOCK_STATUS)?.get(h)?.map(|v| decision(v.value())) == Some(Decision::Undecided) {
                return Ok(Some("undecided"));
            }
        }
        Ok(r.open_table(TX_SEQ)?.get(txid)?.map(|_| "backlog"))
    }

    /// Heights of blocks holding `txid` (the latest block it went into).
    pub fn blocks_with_tx(&self, txid: &str) -> Result<Vec<u64>> {
        Ok(self.db.begin_read()?.open_table(TX_BLOCK)?.get(txid)?.map(|v| vec![v.value()]).unwrap_or_default())
    }

    /// Output references owned by `public_key`, filtered by spent state if asked.
    pub fn outputs_of_key(&self, public_key: &str, spent: Option<bool>) -> Result<Vec<OutputRef>> {
        let r = self.db.begin_read()?;
        let keys = r.open_multimap_table(KEY_OUTPUTS)?;
        let spent_t = r.open_table(SPENT)?;
        let mut out = Vec::new();
        for item in keys.get(public_key)? {
            let key = item?.value().to_string();
            let is_spent = spent_t.get(key.as_str())?.is_some();
            if spent.is_none_or(|want| want == is_spent) {
                let (txid, idx) = key.split_once(':').context("corrupt output key")?;
                out.push(OutputRef { txid: txid.to_string(), index: idx.parse()? });
            }
        }
        Ok(out)
    }

    /// Committed transaction ids of an asset.
    pub fn txs_of_asset(&self, asset_id: &str) -> Result<Vec<String>> {
        let r = self.db.begin_read()?;
        let t = r.open_multimap_table(ASSET_TXS)?;
        let mut out = Vec::new();
        for item in t.get(asset_id)? {
            out.push(item?.value().to_string());
        }
        Ok(out)
    }

    /// Text search over committed asset data (`metadata == false`) or metadata: transaction
    /// ids ranked by how many query words they contain.
    pub fn search(&self, query: &str, metadata: bool, limit: usize) -> Result<Vec<String>> {
        let mut terms = Vec::new();
        words(&Value::String(query.to_string()), &mut terms);
        let r = self.db.begin_read()?;
        let t = r.open_multimap_table(if metadata { META_WORDS } else { ASSET_WORDS })?;
        let mut score: HashMap<String, usize> = HashMap::new();
        for term in &terms {
            for item in t.get(term.as_str())? {
                *score.entry(item?.value().to_string()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = score.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(limit).map(|(id, _)| id).collect())
    }

    /// Number of backlog entries, blocks and committed transactions (for the info endpoint).
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let get = |k| -> Result<u64> { Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0)) };
        Ok((r.open_table(BACKLOG)?.len()?, get(cursor::BLOCK_NEXT)?, get(cursor::COMMITTED)?))
    }
}

impl LedgerView for Store {
    fn is_committed(&self, txid: &str) -> bool {
        self.committed_height(txid).ok().flatten().is_some()
    }

    fn output(&self, r: &OutputRef) -> Option<OutputInfo> {
        let rt = self.db.begin_read().ok()?;
        let t = rt.open_table(OUTPUTS).ok()?;
        let v = t.get(r.key().as_str()).ok()??;
        decode_output(v.value())
    }

    fn spender(&self, r: &OutputRef) -> Option<String> {
        let rt = self.db.begin_read().ok()?;
        let t = rt.open_table(SPENT).ok()?;
        let v = t.get(r.key().as_str()).ok()??;
        Some(v.value().to_string())
    }
}
