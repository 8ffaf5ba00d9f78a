//! The engine: where the shared streams live (DESIGN.md, "Engines").
//!
//! - `embedded`: the streams are keyspaces of the node's own store; a federation of one.
//! - `jetstream`: the streams are NATS JetStream streams replicated by a nats-server cluster:
//!   `CAIRN_BACKLOG_<p>` (one per partition, subject `cairn.backlog.<p>`), `CAIRN_BLOCKS`
//!   (`cairn.blocks`; stream sequence − 1 = block height) and `CAIRN_VOTES`
//!   (`cairn.votes.<height>`). A backlog message carries one group commit of transactions
//!   (see [`encode_batch`]): per-message cost dominates the engine's CPU (one message per tx
//!   cost ~185 µs of nats-server CPU per tx at 3 replicas), so writes are batched as the
//!   embedded engine batches its fsyncs. Message ids (`Nats-Msg-Id`) are the block id, the
//!   voter and height, or a hash of the batch's tx ids, so retried publishes are deduplicated
//!   by the engine. Followers copy every stream, in stream order, into the local store (backlog
//!   transactions numbered in that order, identically on every node); the pipeline reads only
//!   the local store, so a node restarted with an empty disk rebuilds itself from the streams.
//!
//! Writers call the engine from the pipeline threads (blocking calls); the JetStream client
//! runs on its own small tokio runtime.

use crate::block::{Block, BlockBody, Vote};
use crate::config::Database;
use crate::store::{cursor, Store};
use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures_util::{FutureExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called after a follower wrote new stream entries to the local store.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// Appends to the shared streams. Implementations make the data durable (by their own rules)
/// before returning Ok; the local store learns of it directly (embedded) or through the
/// followers (JetStream).
pub trait Engine: Send + Sync {
    /// Engine name for logs and the info endpoint.
    fn name(&self) -> &'static str;
    /// True when other nodes share the streams: partitions have owners, and blocks and votes
    /// also come from others.
    fn shared(&self) -> bool;
    /// Number of backlog partitions.
    fn partitions(&self) -> u32;
    /// Appends transactions `(id, canonical body)` to a backlog partition; `requeue_of` (a
    /// block id) returns the valid transactions of that invalid block (every node does it; the
    /// engine keeps one copy).
    fn append_backlog(&self, partition: u32, txs: &[(String, Vec<u8>)], requeue_of: Option<&str>) -> Result<()>;
    /// Appends a block header to the `blocks` stream (which fixes its height).
    fn append_block(&self, block: &Block) -> Result<()>;
    /// Appends this node's vote on the block at `height`.
    fn append_vote(&self, height: u64, vote: &Vote) -> Result<()>;
}

/// The embedded engine: the node's own store, one partition.
pub struct Embedded {
    store: Arc<Store>,
}

impl Embedded {
    /// Wraps the store.
    pub fn new(store: Arc<Store>) -> Self {
        Embedded { store }
    }
}

impl Engine for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }
    fn shared(&self) -> bool {
        false
    }
    fn partitions(&self) -> u32 {
        1
    }
    fn append_backlog(&self, partition: u32, txs: &[(String, Vec<u8>)], requeue_of: Option<&str>) -> Result<()> {
        self.store.append_backlog(partition, txs, requeue_of.is_some())
    }
    fn append_block(&self, block: &Block) -> Result<()> {
        // Only the block builder thread appends, so reading the next height needs no lock.
        self.store.insert_block(self.store.cursor(cursor::BLOCK_NEXT)?, block, true)
    }
    fn append_vote(&self, height: u64, vote: &Vote) -> Result<()> {
        self.store.insert_vote(height, vote, self.store.cursor(cursor::VOTES_NEXT)? + 1)
    }
}

const BLOCKS: &str = "CAIRN_BLOCKS";
const VOTES: &str = "CAIRN_VOTES";
const BACKLOG_PREFIX: &str = "CAIRN_BACKLOG_";

fn backlog_stream(p: u32) -> String {
    format!("{BACKLOG_PREFIX}{p}")
}

fn backlog_subject(p: u32) -> String {
    format!("cairn.backlog.{p}")
}

/// Largest backlog message written (nats-server's default max_payload is 1 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// A backlog message: for each transaction, `len (u32 BE) ‖ id (64 ASCII hex) ‖ body`, where
/// `len` counts id and body.
pub fn encode_batch(txs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txs.iter().map(|(i, b)| 4 + i.len() + b.len()).sum());
    for (id, body) in txs {
        out.extend_from_slice(&((id.len() + body.len()) as u32).to_be_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// The `(id, body)` records of a backlog message; `None` if it is not one (also when an id
/// is not 64 lower-case hex characters: the store keeps ids in binary).
pub fn decode_batch(mut msg: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let len = u32::from_be_bytes(msg.get(..4)?.try_into().ok()?) as usize;
        let rec = msg.get(4..4 + len)?;
        if len < 64 {
            return None;
        }
        let id = std::str::from_utf8(&rec[..64]).ok().filter(|id| crate::tx::is_hex64(id))?;
        out.push((id, &rec[64..]));
        msg = &msg[4 + len..];
    }
    Some(out)
}

/// Splits transactions into messages of at most [`MAX_BATCH_BYTES`] (one per oversize tx).
fn chunks(txs: &[(String, Vec<u8>)]) -> Vec<&[(String, Vec<u8>)]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (id, body)) in txs.iter().enumerate() {
        let n = 4 + id.len() + body.len();
        if size + n > MAX_BATCH_BYTES && i > start {
            out.push(&txs[start..i]);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < txs.len() {
        out.push(&txs[start..]);
    }
    out
}

/// A message id header (the engine drops a second publish with the same id).
fn msg_id(id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", id);
    h
}

/// Replicas actually used: what was asked, capped by the cluster size (the configured
/// servers), at least one.
pub fn effective_replicas(db: &Database) -> usize {
    db.replicas.clamp(1, db.servers.len().max(1))
}

fn stream_config(name: String, subject: String, replicas: usize) -> stream::Config {
    stream::Config {
        name,
        subjects: vec![subject],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

fn unreachable_hint(db: &Database) -> String {
    format!(
        "cannot reach the NATS JetStream engine at {}: start nats-server there (for a local cluster: `cairn dev-cluster`), \
         or fix database.servers / CAIRN_DATABASE_SERVERS and the engine credentials (database.user, database.password)",
        db.servers.join(",")
    )
}

/// Connects to the cluster with the configured credentials, preferring the servers in the
/// order given (list this node's own nats-server first).
pub async fn connect(db: &Database) -> Result<jetstream::Context> {
    if db.servers.is_empty() {
        bail!("database.backend is \"jetstream\" but database.servers is empty: list the nats-server client URLs (nats://host:4222)");
    }
    let mut opts = async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connection_timeout(Duration::from_secs(db.connect_timeout_secs.max(1)))
        .name("cairn");
    if !db.user.is_empty() {
        opts = opts.user_and_password(db.user.clone(), db.password.clone());
    }
    let servers: Vec<&str> = db.servers.iter().map(String::as_str).collect();
    let client = tokio::time::timeout(Duration::from_secs(db.connect_timeout_secs.max(1)), opts.connect(servers))
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| unreachable_hint(db))?;
    Ok(jetstream::new(client))
}

/// The same connection with a short request timeout, for set-up: a request sent before a
/// fresh cluster has elected its JetStream leader gets no answer, and the default timeout
/// (10 s) would make every start of a new cluster wait that long.
fn quick(js: &jetstream::Context) -> jetstream::Context {
    jetstream::ContextBuilder::new().timeout(Duration::from_millis(750)).build(js.client())
}

/// Retries `f` until JetStream answers (a cluster that just started needs a moment to elect
/// its meta leader) or the connect timeout passes.
async fn until_ready<T, F, Fut>(db: &Database, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(db.connect_timeout_secs.max(1));
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{what}: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("{what} failed; is JetStream enabled on the servers and do they form a cluster?")),
        }
    }
}

/// Backlog partitions that exist in the engine (their streams are named 0..n).
async fn existing_partitions(js: &jetstream::Context) -> Result<u32> {
    let mut names = js.stream_names();
    let mut n = 0;
    while let Some(name) = names.next().await {
        if let Some(p) = name?.strip_prefix(BACKLOG_PREFIX).and_then(|s| s.parse::<u32>().ok()) {
            n = n.max(p + 1);
        }
    }
    Ok(n)
}

/// Creates the streams that are missing: blocks, votes, and backlog partitions up to
/// `partitions` (or keeps what exists). Returns the number of partitions.
async fn ensure_streams(js: &jetstream::Context, db: &Database, partitions: u32) -> Result<u32> {
    let r = effective_replicas(db);
    js.get_or_create_stream(stream_config(BLOCKS.into(), "cairn.blocks".into(), r)).await?;
    js.get_or_create_stream(stream_config(VOTES.into(), "cairn.votes.*".into(), r)).await?;
    let n = existing_partitions(js).await?.max(partitions);
    for p in 0..n {
        js.get_or_create_stream(stream_config(backlog_stream(p), backlog_subject(p), r)).await?;
    }
    Ok(n)
}

/// `cairn set-replicas`: changes the replica count of every Cairn stream (capped by the
/// cluster size); the engine moves the data.
pub async fn set_replicas(db: &Database, replicas: usize) -> Result<usize> {
    let js = connect(db).await?;
    let r = replicas.clamp(1, db.servers.len().max(1));
    let mut names = vec![BLOCKS.to_string(), VOTES.to_string()];
    names.extend((0..existing_partitions(&js).await?).map(backlog_stream));
    for name in names {
        let mut s = js.get_stream(&name).await.with_context(|| format!("stream {name} is missing: start a node first, it creates the streams"))?;
        let mut config = s.info().await?.config.clone();
        config.num_replicas = r;
        js.update_stream(config).await.with_context(|| format!("updating stream {name} to {r} replicas"))?;
    }
    Ok(r)
}

/// `cairn set-shards`: creates backlog partitions up to `n` (partitions hold data, so there
/// are never fewer). Nodes pick the new count up when they restart.
pub async fn set_shards(db: &Database, n: u32) -> Result<u32> {
    let js = connect(db).await?;
    let have = existing_partitions(&js).await?;
    if n < have {
        bail!("the engine already has {have} backlog partitions and they hold transactions: the count can only grow (asked for {n})");
    }
    ensure_streams(&js, db, n).await
}

/// The JetStream engine of one node.
pub struct JetStream {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    partitions: u32,
    /// The local copy the followers write to (told of their errors: see [`Store::note_error`]).
    store: Arc<Store>,
}

/// One stream copied into the local store.
struct Follower {
    stream: String,
    /// Stream sequence the local copy holds up to.
    done: Arc<AtomicU64>,
}

impl JetStream {
    /// Connects, creates missing streams (`default_partitions` backlog partitions when there
    /// are none yet), starts the followers and waits until the local store holds everything
    /// the streams held at start.
    /// `federation` (keyring plus this node) decides which blocks are trusted (see
    /// [`Store::insert_block`]).
    pub fn open(db: &Database, federation: &[String], store: Arc<Store>, on_change: OnChange) -> Result<Self> {
        let default_partitions = federation.len() as u32;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("jetstream").enable_all().build()?;
        let (js, partitions) = rt.block_on(async {
            let js = connect(db).await?;
            let wanted = if db.shards > 0 { db.shards } else { default_partitions.max(1) };
            let setup = quick(&js);
            let n = until_ready(db, "creating the Cairn streams", || ensure_streams(&setup, db, wanted)).await.with_context(|| unreachable_hint(db))?;
            anyhow::Ok((js, n))
        })?;
        let engine = JetStream { rt, js, partitions, store: store.clone() };
        let mut followers = Vec::new();
        let from = |name: &str| store.cursor(name).map(|c| c + 1);
        for p in 0..partitions {
            let start = from(&cursor::of(cursor::BACKLOG_MSG, p))?;
            let s = store.clone();
            let msg_cursor = cursor::of(cursor::BACKLOG_MSG, p);
            followers.push(engine.follow(backlog_stream(p), start, on_change.clone(), move |batch| {
                // Transactions are numbered in stream order, so every node numbers them alike.
                let mut next = s.partition_cursor(cursor::BACKLOG_NEXT, p)?;
                // Requeued transactions (message id `requeue.…`) are written on their own, as
                // they must drop their link to the invalid block they come back from.
                let mut run = 0;
                while run < batch.len() {
                    let kind = is_requeue(&batch[run].1);
                    let end = batch[run..].iter().position(|(_, m)| is_requeue(m) != kind).map_or(batch.len(), |k| run + k);
                    let mut entries = Vec::new();
                    for (seq, m) in &batch[run..end] {
                        match decode_batch(&m.payload) {
                            Some(records) => {
                                for (id, body) in records {
                                    entries.push((next, id, body));
                                    next += 1;
                                }
                            }
                            None => tracing::warn!(partition = p, seq, "backlog stream holds a message that is not a batch of transactions; ignored"),
                        }
                    }
                    s.insert_backlog(p, &entries, false, kind, Some((&msg_cursor, batch[end - 1].0)))?;
                    run = end;
                }
                Ok(())
            }));
        }
        let s = store.clone();
        let federation = federation.to_vec();
        followers.push(engine.follow(BLOCKS.into(), from(cursor::BLOCK_NEXT)?, on_change.clone(), move |batch| {
            for (seq, m) in batch {
                let block = serde_json::from_slice::<Block>(&m.payload).unwrap_or_else(|_| {
                    tracing::warn!(height = seq - 1, "blocks stream holds a message that is not a block; it will be voted invalid");
                    garbage_block(*seq)
                });
                let trusted = federation.contains(&block.block.node_pubkey) && block.verify();
                s.insert_block(seq - 1, &block, trusted)?;
            }
            Ok(())
        }));
        let s = store.clone();
        followers.push(engine.follow(VOTES.into(), from(cursor::VOTES_NEXT)?, on_change, move |batch| {
            for (seq, m) in batch {
                let height = m.subject.rsplit('.').next().and_then(|h| h.parse::<u64>().ok());
                match (height, serde_json::from_slice::<Vote>(&m.payload)) {
                    (Some(h), Ok(v)) => s.insert_vote(h, &v, *seq)?,
                    _ => {
                        tracing::warn!(seq, "votes stream holds a message that is not a vote; ignored");
                        s.set_cursor(cursor::VOTES_NEXT, *seq)?;
                    }
                }
            }
            Ok(())
        }));
        engine.catch_up(&followers)?;
        Ok(engine)
    }

    /// Waits until every follower holds what its stream held when this was called.
    fn catch_up(&self, followers: &[Follower]) -> Result<()> {
        let targets: Vec<u64> = self.rt.block_on(async {
            let mut t = Vec::new();
            for f in followers {
                let mut s = self.js.get_stream(&f.stream).await?;
                t.push(s.info().await?.state.last_sequence);
            }
            anyhow::Ok(t)
        })?;
        let started = Instant::now();
        let mut logged = Instant::now();
        loop {
            let behind: u64 = followers.iter().zip(&targets).map(|(f, t)| t.saturating_sub(f.done.load(Ordering::Acquire))).sum();
            if behind == 0 {
                if started.elapsed() > Duration::from_secs(1) {
                    tracing::info!(secs = started.elapsed().as_secs_f64(), "local store caught up with the engine streams");
                }
                return Ok(());
            }
            if logged.elapsed() > Duration::from_secs(5) {
                tracing::info!(behind, "catching up with the engine streams");
                logged = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Copies a stream from sequence `start` into the local store, in order, in batches,
    /// forever (reconnecting after errors).
    fn follow(
        &self,
        name: String,
        start: u64,
        on_change: OnChange,
        write: impl Fn(&[(u64, async_nats::Message)]) -> Result<()> + Send + Sync + 'static,
    ) -> Follower {
        let done = Arc::new(AtomicU64::new(start - 1));
        let js = self.js.clone();
        let (stream_name, progress) = (name.clone(), done.clone());
        let store = self.store.clone();
        self.rt.spawn(async move {
            loop {
                let next = progress.load(Ordering::Acquire) + 1;
                let result: Result<()> = async {
                    let s = js.get_stream(&stream_name).await?;
                    let c = s
                        .create_consumer(consumer::pull::OrderedConfig {
                            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                            ..Default::default()
                        })
                        .await?;
                    let mut msgs = c.messages().await?;
                    while let Some(m) = msgs.next().await {
                        let mut batch = vec![m?];
                        while batch.len() < 1024 {
                            match msgs.next().now_or_never() {
                                Some(Some(m)) => batch.push(m?),
                                _ => break,
                            }
                        }
                        let mut items = Vec::with_capacity(batch.len());
                        for m in batch {
                            let seq = m.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence;
                            items.push((seq, m.message));
                        }
                        // An ordered consumer never skips; drop what a restarted one repeats.
                        items.retain(|(seq, _)| *seq > progress.load(Ordering::Acquire));
                        let Some(last) = items.last().map(|(s, _)| *s) else { continue };
                        write(&items)?;
                        progress.store(last, Ordering::Release);
                        on_change();
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    store.note_error(&e);
                    tracing::warn!("following stream {stream_name}: {e:#}; retrying in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Follower { stream: name, done }
    }

    fn publish_all(&self, subject: String, items: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.rt.block_on(async {
            let mut acks = Vec::with_capacity(items.len());
            for (id, body) in items {
                acks.push(self.js.publish_with_headers(subject.clone(), msg_id(&id), body.into()).await?);
            }
            for a in acks {
                a.await?;
            }
            anyhow::Ok(())
        })
        .context("the JetStream engine did not acknowledge the write (is a nats-server of the cluster down? the client reconnects by itself; retry)")
    }
}

/// True for a backlog message that requeues the transactions of an invalid block.
fn is_requeue(m: &async_nats::Message) -> bool {
    m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).is_some_and(|v| v.as_str().starts_with("requeue."))
}

/// Stands in for an unreadable message on the blocks stream so that heights stay contiguous;
/// it never verifies, so every node votes it invalid.
fn garbage_block(seq: u64) -> Block {
    Block {
        id: format!("unreadable-{seq}"),
        block: BlockBody { timestamp: String::new(), transactions: vec![], node_pubkey: String::new(), voters: vec![], partition: 0, range: [0, 0] },
        signature: String::new(),
    }
}

impl Engine for JetStream {
    fn name(&self) -> &'static str {
        "jetstream"
    }
    fn shared(&self) -> bool {
        true
    }
    fn partitions(&self) -> u32 {
        self.partitions
    }
    fn append_backlog(&self, partition: u32, txs: &[(String, Vec<u8>)], requeue_of: Option<&str>) -> Result<()> {
        use sha3::Digest;
        let items = chunks(txs)
            .into_iter()
            .map(|chunk| {
                let mut h = sha3::Sha3_256::new();
                chunk.iter().for_each(|(id, _)| h.update(id.as_bytes()));
                let hash = hex::encode(h.finalize());
                let id = match requeue_of {
                    Some(block) => format!("requeue.{block}.{hash}"),
                    None => hash,
                };
                (id, encode_batch(chunk))
            })
            .collect();
        self.publish_all(backlog_subject(partition), items)
    }
    fn append_block(&self, block: &Block) -> Result<()> {
        self.publish_all("cairn.blocks".into(), vec![(block.id.clone(), crate::block::to_bytes(block))])
    }
    fn append_vote(&self, height: u64, vote: &Vote) -> Result<()> {
        let id = format!("{height}.{}", vote.node_pubkey);
        self.publish_all(format!("cairn.votes.{height}"), vec![(id, crate::block::to_bytes(vote))])
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        // Followers loop forever; stop them with the runtime.
        let rt = std::mem::replace(&mut self.rt, tokio::runtime::Builder::new_current_thread().build().expect("runtime"));
        rt.shutdown_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_split_under_the_payload_limit() {
        let txs: Vec<(String, Vec<u8>)> = (0..2000).map(|i| (format!("{i:064}"), vec![b'x'; 700 + i % 7])).collect();
        let parts = chunks(&txs);
        assert!(parts.len() >= 3, "{}", parts.len());
        let mut back = Vec::new();
        for part in &parts {
            let msg = encode_batch(part);
            assert!(msg.len() <= MAX_BATCH_BYTES);
            back.extend(decode_batch(&msg).unwrap().into_iter().map(|(i, b)| (i.to_string(), b.to_vec())));
        }
        assert_eq!(back, txs);
        assert!(decode_batch(b"\0\0\0\x05short").is_none());
        assert!(decode_batch(&[0, 0, 0, 200, 1, 2]).is_none());
    }
}
