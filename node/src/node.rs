//! A running node: the ingest path and the three pipeline threads of DESIGN.md, over either
//! engine (`engine.rs`).
//!
//! ingest (HTTP) ─► backlog writer (group commit, durable in the engine) ─► block builder
//! (per partition: ≤ max_txs or timeout, signed header) ─► consensus (validate block, vote,
//! tally, apply in block order). The pipeline reads the local store only; with JetStream the
//! followers fill it from the streams. Every cursor lives in the store, so a restart resumes
//! where the last durable write left off.
//!
//! Partitions: with `n` nodes (sorted keyring + self) partition `p` is built by node
//! `p mod n`. If a partition holds unbuilt transactions and nothing was built from it for
//! `backlog_reassign_delay` seconds, the next node in that order takes over, then the one
//! after, and so on: every node computes the same successor.

use crate::block::{self, Block, BlockBody, Decision, Vote, VoteBody};
use crate::config::Config;
use crate::crypto::Keypair;
use crate::engine::{Embedded, Engine, JetStream};
use crate::metrics::{self, Counters, Metrics};
use crate::store::{cursor, Store};
use crate::tx::{Transaction, TxError};
use crate::validation::{LedgerView, Overlay, Validator};
use anyhow::{Context, Result};
use dashmap::DashMap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A wake-up flag between threads (set by producers, cleared by the waiting consumer).
#[derive(Default)]
pub struct Signal {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    /// Wakes the waiter.
    pub fn notify(&self) {
        *self.flag.lock().expect("signal lock") = true;
        self.cv.notify_all();
    }

    /// Waits until notified or `timeout` passes; clears the flag.
    pub fn wait(&self, timeout: Duration) {
        let g = self.flag.lock().expect("signal lock");
        let (mut g, _) = self.cv.wait_timeout_while(g, timeout, |f| !*f).expect("signal lock");
        *g = false;
    }
}

/// Why a submission was not accepted.
#[derive(Debug)]
pub enum SubmitError {
    /// The transaction is invalid (400).
    Invalid(TxError),
    /// The engine could not make it durable (503); nothing was accepted.
    Unavailable(String),
}

/// An accepted transaction, with the canonical text stored for it.
pub struct Submitted {
    /// The parsed transaction.
    pub tx: Arc<Transaction>,
    /// Its canonical JSON (stored in the backlog and echoed to the client).
    pub canonical: String,
    /// With `wait_commit`: yields the decision of the block that includes it.
    pub waiter: Option<oneshot::Receiver<Decision>>,
}

/// Signatures of one submission, each with the index of its message; answered with one
/// verdict per signature.
struct VerifyJob {
    checks: Vec<(crate::cc::SigCheck, usize)>,
    msgs: Vec<[u8; 32]>,
    done: oneshot::Sender<Vec<bool>>,
}

/// Under load (the last batch held several submissions), a batch of fewer signatures than this
/// waits [`LINGER`] for more: batch verification costs less per signature the larger the batch.
const LINGER_BELOW: usize = 32;
/// How long a small batch waits under load (adds at most this to a submission's latency).
const LINGER: Duration = Duration::from_micros(500);

/// Verifies the signatures of concurrent submissions together: drains every queued job
/// (up to ~1000 signatures, or [`crate::crypto::PAR_CHUNK`] per core on larger machines) into
/// one batch, which a large backlog gets verified on all cores.
fn sig_verifier(mut rx: mpsc::Receiver<VerifyJob>, metrics: &Metrics) {
    let most = (crate::crypto::PAR_CHUNK * rayon::current_num_threads()).max(1024);
    let mut busy = false;
    while let Some(first) = rx.blocking_recv() {
        let mut n = first.checks.len();
        let mut jobs = vec![first];
        let mut drain = |jobs: &mut Vec<VerifyJob>, n: &mut usize| {
            while *n < most {
                match rx.try_recv() {
                    Ok(j) => {
                        *n += j.checks.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
        };
        drain(&mut jobs, &mut n);
        if busy && n < LINGER_BELOW {
            std::thread::sleep(LINGER);
            drain(&mut jobs, &mut n);
        }
        busy = jobs.len() > 1;
        let mut checks = Vec::with_capacity(n);
        let mut msgs = Vec::with_capacity(n);
        for j in &jobs {
            let base = msgs.len();
            msgs.extend_from_slice(&j.msgs);
            checks.extend(j.checks.iter().map(|(c, m)| (*c, base + m)));
        }
        let started = Instant::now();
        let verdicts = crate::crypto::verify_all_par(&checks, &msgs);
        metrics.time(metrics::name::SIG_BATCH_US, started.elapsed().as_micros() as u64);
        metrics.time(metrics::name::SIG_BATCH_SIZE, checks.len() as u64);
        let mut at = 0;
        for j in jobs {
            let k = j.checks.len();
            let _ = j.done.send(verdicts[at..at + k].to_vec());
            at += k;
        }
    }
}

struct Pending {
    partition: u32,
    id: String,
    body: Vec<u8>,
    ack: oneshot::Sender<Result<(), String>>,
}


/// The node: shared by the HTTP handlers and the pipeline threads.
pub struct Node {
    /// Effective configuration.
    pub config: Config,
    /// This node's keypair.
    pub key: Keypair,
    /// Local copy of the engine streams, and local state.
    pub store: Arc<Store>,
    /// Where the shared streams live.
    pub engine: Arc<dyn Engine>,
    /// The keyring plus this node, sorted: who votes, and who owns which partition.
    pub federation: Vec<String>,
    /// Partitions this node appends accepted transactions to.
    write_partitions: Vec<u32>,
    /// Validation rules.
    pub validator: Validator,
    /// Counters (on `GET /` and sent as StatsD counters).
    pub stats: Arc<Counters>,
    /// StatsD emission.
    pub metrics: Arc<Metrics>,
    inflight: Mutex<Overlay>,
    /// Transactions this node parsed and verified at ingest, until decided: the vote uses
    /// these objects instead of re-reading, re-parsing and re-verifying their bodies.
    pending: DashMap<String, Arc<Transaction>>,
    verify_q: mpsc::Sender<VerifyJob>,
    backlog_q: Mutex<Option<mpsc::Sender<Pending>>>,
    events: broadcast::Sender<Arc<str>>,
    waiters: DashMap<String, Vec<oneshot::Sender<Decision>>>,
    new_backlog: Arc<Signal>,
    new_block: Arc<Signal>,
    caught_up: AtomicBool,
    stop: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Node {
    /// Opens the store and the engine, starts the pipeline threads, and returns once the
    /// local state has caught up with the engine (so reads are current).
    pub fn start(config: Config, validator: Validator) -> Result<Arc<Node>> {
        config.validate()?;
        // Unnamed, rayon's workers would take the name of whichever thread first used the pool
        // (the verifier or consensus), and per-thread CPU figures would count them there.
        // Fails harmlessly when the pool already exists (a second node in one test process).
        let _ = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("rayon-{i}")).build_global();
        let key = Keypair::from_private_b58(&config.keypair.private).context("keypair.private")?;
        let store = Arc::new(Store::open(&Store::path_in(&config.database.path))?);
        let federation = federation_of(&config, &key);
        let (new_backlog, new_block) = (Arc::new(Signal::default()), Arc::new(Signal::default()));
        let engine: Arc<dyn Engine> = match config.database.backend.as_str() {
            "jetstream" => {
                let (b, k) = (new_backlog.clone(), new_block.clone());
                let on_change = Arc::new(move || {
                    b.notify();
                    k.notify();
                });
                Arc::new(JetStream::open(&config.database, &federation, store.clone(), on_change)?)
            }
            _ => Arc::new(Embedded::new(store.clone())),
        };
        let write_partitions = write_partitions(&federation, &key.public_b58, engine.partitions());
        let (tx, rx) = mpsc::channel(65_536);
        let (verify_q, verify_rx) = mpsc::channel(65_536);
        let (events, _) = broadcast::channel(16_384);
        let stats = Arc::new(Counters::default());
        let metrics = Arc::new(Metrics::start(&config.statsd, &key.public_b58[..8], "node", stats.clone()));
        let verifier_metrics = metrics.clone();
        let node = Arc::new(Node {
            config,
            key,
            store,
            engine,
            federation,
            write_partitions,
            validator,
            stats,
            metrics,
            inflight: Mutex::new(Overlay::default()),
            pending: DashMap::new(),
            verify_q,
            backlog_q: Mutex::new(Some(tx)),
            events,
            waiters: DashMap::new(),
            new_backlog,
            new_block,
            caught_up: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        node.rebuild_inflight()?;
        let spawn = |name: &str, f: fn(Arc<Node>)| {
            let n = node.clone();
            std::thread::Builder::new().name(name.into()).spawn(move || f(n)).expect("spawn pipeline thread")
        };
        let writer = {
            let n = node.clone();
            std::thread::Builder::new().name("backlog-writer".into()).spawn(move || backlog_writer(n, rx))?
        };
        let builder = spawn("block-builder", |n| run_logged("block builder", &n, block_builder));
        let consensus = spawn("consensus", |n| run_logged("consensus", &n, consensus));
        let verifier = std::thread::Builder::new().name("sig-verifier".into()).spawn(move || sig_verifier(verify_rx, &verifier_metrics))?;
        node.threads.lock().expect("threads lock").extend([writer, builder, consensus]);
        drop(verifier); // ends by itself when the node (the job sender) is dropped
        let mut last_log = Instant::now();
        while !node.caught_up.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
            if last_log.elapsed() > Duration::from_secs(5) {
                let (_, applied) = node.store.state_digest()?;
                let blocks = node.store.cursor(cursor::BLOCK_NEXT)?;
                tracing::info!(applied, blocks, "replaying blocks before serving reads");
                last_log = Instant::now();
            }
        }
        tracing::info!(engine = node.engine.name(), partitions = node.engine.partitions(), writes_to = ?node.write_partitions, "pipeline ready");
        Ok(node)
    }

    /// Stops accepting transactions and joins the pipeline threads (pending work stays in
    /// the durable backlog and resumes at the next start).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.backlog_q.lock().expect("queue lock").take();
        self.new_backlog.notify();
        self.new_block.notify();
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        for t in threads {
            let _ = t.join();
        }
        self.metrics.shutdown();
    }

    /// Who builds partition `p` when nothing was built from it for `stalled`: its owner,
    /// then each next node in federation order per `backlog_reassign_delay` of silence.
    fn builder_of(&self, p: u32, stalled: Duration) -> &str {
        let n = self.federation.len();
        let k = (stalled.as_secs() / self.config.backlog_reassign_delay.max(1)) as usize;
        &self.federation[(p as usize + k) % n]
    }

    /// A receiver of valid-transaction events (JSON text), for the websocket stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// Number of accepted transactions not yet decided.
    pub fn inflight_len(&self) -> usize {
        self.inflight.lock().expect("inflight lock").len()
    }

    /// Validates a transaction and appends it durably to the backlog. With `wait_commit`,
    /// also returns a receiver that yields the decision of the block that includes it.
    /// Returns the transaction and its canonical text (what was stored).
    pub async fn submit(&self, body: &[u8], wait_commit: bool) -> Result<Submitted, SubmitError> {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if self.store.failure().is_some() {
            return Err(SubmitError::Unavailable(format!("{STORE_FAILED}; this transaction was not stored: send it to another member of the federation, or again once this node is back")));
        }
        let started = Instant::now();
        let tx = Transaction::parse(body).map_err(SubmitError::Invalid)?;
        tx.check_intrinsic().map_err(SubmitError::Invalid)?;
        self.verify_signatures(&tx).await?;
        {
            let mut inflight = self.inflight.lock().expect("inflight lock");
            let seen = self.store.in_backlog(&tx.id).map_err(|e| SubmitError::Unavailable(format!("{e:#}")))?;
            if !seen {
                self.validator.check_stateful(&tx, &Unseen { store: &self.store, id: &tx.id }, &inflight, false).map_err(SubmitError::Invalid)?;
            } else {
                self.validator.check_stateful(&tx, &*self.store, &inflight, false).map_err(SubmitError::Invalid)?;
                return Err(SubmitError::Invalid(TxError::DuplicateTransaction(format!(
                    "transaction `{}` was already accepted; follow it at /api/v1/statuses?transaction_id={}",
                    tx.id, tx.id
                ))));
            }
            inflight.add(&tx);
        }
        self.metrics.sampled_time(metrics::name::TX_VALIDATION_US, started.elapsed().as_micros() as u64, &[]);
        let tx = Arc::new(tx);
        self.pending.insert(tx.id.clone(), tx.clone());
        let waiter = wait_commit.then(|| {
            let (s, r) = oneshot::channel();
            self.waiters.entry(tx.id.clone()).or_default().push(s);
            r
        });
        let (ack, acked) = oneshot::channel();
        let sender = self.backlog_q.lock().expect("queue lock").clone();
        let canonical = tx.canonical();
        let partition = self.write_partitions[usize::from(tx.id.as_bytes()[0]) % self.write_partitions.len()];
        let sent = match sender {
            Some(q) => q.send(Pending { partition, id: tx.id.clone(), body: canonical.clone().into_bytes(), ack }).await.is_ok(),
            None => false,
        };
        let result = if sent { acked.await.unwrap_or_else(|_| Err("backlog writer stopped".into())) } else { Err("node is shutting down".into()) };
        if let Err(e) = result {
            self.inflight.lock().expect("inflight lock").remove(&tx);
            self.pending.remove(&tx.id);
            self.waiters.remove(&tx.id);
            return Err(SubmitError::Unavailable(e));
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Submitted { tx, canonical, waiter })
    }

    /// Verifies a transaction's signatures on the verifier thread, batched with whatever
    /// other requests are waiting (batch verification is ~2x cheaper per signature).
    async fn verify_signatures(&self, tx: &Transaction) -> Result<(), SubmitError> {
        let (done, verdicts) = oneshot::channel();
        let job = VerifyJob { checks: tx.signature_checks(), msgs: tx.signing_messages(), done };
        self.verify_q.send(job).await.map_err(|_| SubmitError::Unavailable("signature verifier stopped".into()))?;
        let verdicts = verdicts.await.map_err(|_| SubmitError::Unavailable("signature verifier stopped".into()))?;
        match verdicts.iter().position(|ok| !ok) {
            None => Ok(()),
            // Named by the input that carries it (an input can carry several: a threshold's).
            Some(i) => Err(SubmitError::Invalid(crate::validation::bad_signature(tx, tx.signature_checks()[i].1))),
        }
    }

    /// Accepted transactions not yet decided are in-flight again after a restart: those in
    /// undecided blocks and those not yet in a block.
    fn rebuild_inflight(&self) -> Result<()> {
        let store = &self.store;
        let mut inflight = self.inflight.lock().expect("inflight lock");
        let mut add = |id: &str, body: &[u8]| -> Result<()> {
            if store.committed_height(id)?.is_none() && !store.is_dropped(id)? {
                if let Ok(tx) = Transaction::parse(body) {
                    inflight.add(&tx);
                }
            }
            Ok(())
        };
        for h in store.cursor(cursor::APPLIED)?..store.cursor(cursor::BLOCK_NEXT)? {
            for id in store.block(h)?.map(|b| b.block.transactions).unwrap_or_default() {
                if let Some(body) = store.tx_body(&id)? {
                    add(&id, &body)?;
                }
            }
        }
        for p in 0..self.engine.partitions() {
            let mut next = store.partition_cursor(cursor::BUILT_UPTO, p)?;
            loop {
                let batch = store.backlog_from(p, next, 10_000)?;
                let Some(last) = batch.last() else { break };
                next = last.0 + 1;
                for (_, id, body) in batch {
                    add(&id, &body)?;
                }
            }
        }
        if !inflight.is_empty() {
            tracing::info!(count = inflight.len(), "resuming accepted transactions from the backlog");
        }
        Ok(())
    }

    fn decided(&self, tx: &Transaction, d: Decision) {
        self.pending.remove(&tx.id);
        if let Some((_, ws)) = self.waiters.remove(&tx.id) {
            for w in ws {
                let _ = w.send(d);
            }
        }
    }
}

/// The store, for checking a submission whose id is not in the local backlog: every committed
/// transaction is in the local backlog (a block is applied only once its bodies are here), so
/// that id is not committed either. Saves the ingest path one point lookup per transaction.
struct Unseen<'a> {
    store: &'a Store,
    id: &'a str,
}

impl LedgerView for Unseen<'_> {
    fn is_committed(&self, txid: &str) -> bool {
        txid != self.id && self.store.is_committed(txid)
    }

    fn output(&self, r: &crate::tx::OutputRef) -> Option<crate::validation::OutputInfo> {
        self.store.output(r)
    }

    fn spender(&self, r: &crate::tx::OutputRef) -> Option<String> {
        self.store.spender(r)
    }
}

/// The keyring plus this node, sorted (every node computes the same list).
fn federation_of(config: &Config, key: &Keypair) -> Vec<String> {
    let mut f: Vec<String> = config.keyring.clone();
    if !f.contains(&key.public_b58) {
        f.push(key.public_b58.clone());
    }
    f.sort();
    f.dedup();
    f
}

/// The partitions node `me` appends to: those it owns (`p mod n` = its index), or, when
/// there are fewer partitions than nodes, one shared with others.
fn write_partitions(federation: &[String], me: &str, partitions: u32) -> Vec<u32> {
    let n = federation.len();
    let i = federation.iter().position(|k| k == me).unwrap_or(0);
    let mine: Vec<u32> = (0..partitions).filter(|p| *p as usize % n == i).collect();
    if mine.is_empty() {
        vec![(i % partitions as usize) as u32]
    } else {
        mine
    }
}

fn run_logged(name: &str, node: &Arc<Node>, f: fn(&Arc<Node>) -> Result<()>) {
    while !node.stop.load(Ordering::SeqCst) {
        match f(node) {
            Ok(()) => return,
            Err(e) => {
                node.store.note_error(&e);
                tracing::error!("{name} failed: {e:#}; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// What a client is told while the node stops because its store refuses writes (the operator
/// gets the cause and the path in the log; a client needs neither).
const STORE_FAILED: &str = "this node is stopping: its local store refuses all writes after a failed write (a full disk or a failing device)";

fn backlog_writer(node: Arc<Node>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 8192 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut by_partition: BTreeMap<u32, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for p in batch.iter_mut() {
            by_partition.entry(p.partition).or_default().push((p.id.clone(), std::mem::take(&mut p.body)));
        }
        let mut results = BTreeMap::new();
        for (partition, items) in by_partition {
            let started = Instant::now();
            let result = node.engine.append_backlog(partition, &items, None).map_err(|e| {
                node.store.note_error(&e);
                tracing::error!("backlog append failed: {e:#}");
                match node.store.failure() {
                    Some(_) => format!("{STORE_FAILED}; this transaction's write failed with it and may or may not be stored: once the node is back, check /api/v1/statuses before resending"),
                    None => format!("the engine did not confirm the write ({e:#}); it may have been stored after all and would then still commit: check /api/v1/statuses before resending"),
                }
            });
            node.metrics.time(metrics::name::ENGINE_PUBLISH_US, started.elapsed().as_micros() as u64);
            results.insert(partition, result);
        }
        for p in batch {
            let _ = p.ack.send(results[&p.partition].clone());
        }
        node.new_backlog.notify();
    }
}

fn block_builder(node: &Arc<Node>) -> Result<()> {
    let store = &node.store;
    let partitions = node.engine.partitions();
    // Per partition: next backlog sequence to build from, and since when the builder cursor
    // has not moved while transactions waited (for the takeover of a silent owner). The clock
    // starts when waiting transactions are first seen, not at the last look at an empty
    // partition (up to one idle wait, 200 ms, earlier: takeovers came that much too soon).
    let mut next = vec![0u64; partitions as usize];
    let mut stalled: Vec<(u64, Option<Instant>)> = vec![(u64::MAX, None); partitions as usize];
    let my_index = node.federation.iter().position(|k| *k == node.key.public_b58).unwrap_or(0);
    let mut taken_over = vec![false; partitions as usize];
    let mut depth_sent = Instant::now() - Duration::from_secs(10);
    while !node.stop.load(Ordering::SeqCst) {
        let mut built_any = false;
        let send_depth = depth_sent.elapsed() >= Duration::from_secs(1);
        if send_depth {
            depth_sent = Instant::now();
        }
        for p in 0..partitions {
            let i = p as usize;
            let built = store.partition_cursor(cursor::BUILT_UPTO, p)?;
            if send_depth {
                let depth = store.partition_cursor(cursor::BACKLOG_NEXT, p)?.saturating_sub(built);
                node.metrics.gauge(metrics::name::BACKLOG_DEPTH, depth, &[("partition", &p.to_string())]);
            }
            next[i] = next[i].max(built);
            let waiting = store.partition_cursor(cursor::BACKLOG_NEXT, p)? > next[i];
            if !waiting || stalled[i].0 != built {
                stalled[i] = (built, None);
            }
            if waiting && stalled[i].1.is_none() {
                stalled[i].1 = Some(Instant::now());
            }
            let silent = stalled[i].1.map_or(Duration::ZERO, |since| since.elapsed());
            if node.engine.shared() {
                let builder = node.builder_of(p, silent);
                if builder != node.key.public_b58 {
                    continue;
                }
                let takeover = i % node.federation.len() != my_index;
                if takeover && !taken_over[i] {
                    tracing::warn!(partition = p, silent_secs = silent.as_secs(), "taking over a silent partition");
                }
                taken_over[i] = takeover;
            }
            built_any |= build_block(node, p, &mut next[i])?;
        }
        if !built_any {
            node.new_backlog.wait(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Builds one block from partition `p` starting at `*next` (waiting `block.timeout_ms` for
/// a non-full batch to fill); returns false if the partition had nothing new.
fn build_block(node: &Node, p: u32, next: &mut u64) -> Result<bool> {
    let store = &node.store;
    let max = node.config.block.max_txs;
    let mut entries = store.backlog_ids(p, *next, max)?;
    if entries.is_empty() {
        return Ok(false);
    }
    if entries.len() < max {
        std::thread::sleep(Duration::from_millis(node.config.block.timeout_ms)); // let the batch fill up
        entries = store.backlog_ids(p, *next, max)?;
    }
    let first = entries[0].0;
    let last = entries.last().expect("non-empty").0;
    let mut ids = Vec::with_capacity(entries.len());
    let mut seen = HashSet::with_capacity(entries.len());
    for (_, id) in entries {
        if store.committed_height(&id)?.is_none() && seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        store.skip_backlog(p, last + 1)?;
    } else {
        let body = BlockBody {
            timestamp: block::timestamp(),
            transactions: ids,
            node_pubkey: node.key.public_b58.clone(),
            voters: node.federation.clone(),
            partition: p,
            range: [first, last],
        };
        let b = Block::new(&node.key, body);
        node.engine.append_block(&b)?;
        node.stats.blocks_built.fetch_add(1, Ordering::Relaxed);
        node.metrics.time(metrics::name::BLOCK_SIZE_TXS, b.block.transactions.len() as u64);
        tracing::debug!(partition = p, txs = b.block.transactions.len(), "block built");
        node.new_block.notify();
    }
    *next = last + 1;
    Ok(true)
}

struct PendingBlock {
    /// When this node read the block (for the decision latency).
    seen: Instant,
    block: Block,
    txs: Vec<Arc<Transaction>>,
    valid: Vec<bool>,
}

/// The blocks this node voted on and has not applied a decision to yet, and the overlay of the
/// transactions it found valid in them (later blocks are validated on top of it).
///
/// A decided block takes back exactly what it added. One transaction can sit in two undecided
/// blocks: members that judged an invalid block differently requeue different lists, so a
/// transaction can come back to the backlog twice. It is then valid in one block and a
/// duplicate, or a double spend at that moment, in the other. Removing every transaction of
/// the block decided first used to take it out of the overlay while the block where it was
/// valid was still undecided, so a third copy could be voted valid too: the same transaction
/// in two VALID blocks (`loadgen sweep`'s gate caught it once in CI).
#[derive(Default)]
struct Undecided {
    blocks: BTreeMap<u64, PendingBlock>,
    overlay: Overlay,
}

impl Undecided {
    /// Records the block voted on at `height`, adding its valid transactions to the overlay.
    fn insert(&mut self, height: u64, p: PendingBlock) {
        p.txs.iter().zip(&p.valid).filter(|(_, ok)| **ok).for_each(|(t, _)| self.overlay.add(t));
        self.blocks.insert(height, p);
    }

    /// Removes the block at `height` once decided, and what it added to the overlay.
    fn take(&mut self, height: u64) -> Option<PendingBlock> {
        let p = self.blocks.remove(&height)?;
        p.txs.iter().zip(&p.valid).filter(|(_, ok)| **ok).for_each(|(t, _)| self.overlay.remove(t));
        Some(p)
    }

    /// True while `txid` is valid in a block still undecided: it is still on its way.
    fn holds(&self, txid: &str) -> bool {
        self.overlay.contains(txid)
    }
}

/// A block's transactions, its per-transaction verdicts and the reason it is invalid.
type Validated = (Vec<Arc<Transaction>>, Vec<bool>, Option<String>);

/// A block's parsed transactions, and the ids of those this node verified at ingest.
type Loaded = (Vec<Arc<Transaction>>, HashSet<String>);

/// The parsed transactions of a block: this node's verified objects when it has them, else
/// the bodies from the (local copy of the) backlog. `Ok(None)`: bodies not here yet.
fn load_txs(node: &Node, b: &Block) -> Result<Option<Loaded>> {
    if node.store.partition_cursor(cursor::BACKLOG_NEXT, b.block.partition)? <= b.block.range[1] {
        return Ok(None);
    }
    let mut txs = Vec::with_capacity(b.block.transactions.len());
    let mut in_memory = HashSet::new();
    for id in &b.block.transactions {
        if let Some(tx) = node.pending.get(id) {
            in_memory.insert(id.clone());
            txs.push(tx.clone());
            continue;
        }
        let body = node.store.tx_body(id)?.with_context(|| format!("body of transaction {id} missing from the backlog"))?;
        match Transaction::parse(&body) {
            Ok(tx) if tx.id == *id => txs.push(Arc::new(tx)),
            _ => anyhow::bail!("transaction {id} in the backlog does not parse"),
        }
    }
    Ok(Some((txs, in_memory)))
}

/// Validates a block on top of committed state and `overlay`. `Ok(None)`: its transaction
/// bodies have not reached this node yet.
fn load_and_validate(node: &Node, b: &Block, overlay: &Overlay) -> Result<Option<Validated>> {
    let reject = |why: String| Ok(Some((vec![], vec![], Some(why))));
    if !b.verify() {
        return reject("block id or signature does not verify".into());
    }
    if !node.federation.contains(&b.block.node_pubkey) {
        return reject(format!("block creator {} is not in the keyring", b.block.node_pubkey));
    }
    if b.block.partition >= node.engine.partitions() || b.block.range[0] > b.block.range[1] {
        return reject(format!("block names partition {} range {:?}, which this node does not have (restart nodes after set-shards)", b.block.partition, b.block.range));
    }
    let (txs, in_memory) = match load_txs(node, b) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return Ok(None),
        Err(e) => return reject(format!("{e:#}")),
    };
    let results = node.validator.validate_block_with(&txs, &*node.store, overlay, &|id| in_memory.contains(id));
    let reason = results.iter().find_map(|r| r.as_ref().err()).map(|e| format!("{}: {e}", e.class()));
    let reason = reason.or_else(|| txs.is_empty().then(|| "block holds no transactions".to_string()));
    Ok(Some((txs, results.iter().map(Result::is_ok).collect(), reason)))
}

/// How many times a node returns one transaction to the backlog after invalid blocks that it
/// found nothing wrong with itself (the majority disagreeing with it): bounded, so that nodes
/// disagreeing about a transaction cannot loop. When this node found invalid transactions in
/// the block (double spends beside it), the valid ones always return: each such round drops the
/// invalid ones, so it ends, and a valid transaction is never lost for its neighbours (found by
/// `loadgen sweep` with double-spend pairs: with a limit on every round, about 3 % of the valid
/// transactions were dropped after landing beside losing double spends three times).
const MAX_REQUEUES: u32 = 3;

fn consensus(node: &Arc<Node>) -> Result<()> {
    let store = &node.store;
    let me = node.key.public_b58.clone();
    let mut applied = store.cursor(cursor::APPLIED)?;
    let mut voted = store.cursor(cursor::VOTED)?.max(applied);
    let mut undecided = Undecided::default();
    // How often this node returned each transaction to the backlog (see MAX_REQUEUES).
    let mut requeued: HashMap<String, u32> = HashMap::new();
    // Blocks voted on but undecided before a restart: reload them (their votes are stored).
    for h in applied..voted {
        let Some(b) = store.block(h)? else { break };
        let Some((txs, valid, _)) = wait_for(node, || load_and_validate(node, &b, &undecided.overlay))? else { return Ok(()) };
        undecided.insert(h, PendingBlock { seen: Instant::now(), block: b, txs, valid });
    }
    let mut previous = match voted.checked_sub(1) {
        Some(h) => store.block(h)?.map(|b| b.id).unwrap_or_default(),
        None => "genesis".to_string(),
    };
    while !node.stop.load(Ordering::SeqCst) {
        let mut progressed = false;
        if let Some(b) = store.block(voted)? {
            if let Some((txs, valid, reason)) = load_and_validate(node, &b, &undecided.overlay)? {
                let is_valid = reason.is_none();
                // A node rebuilt from the streams finds its own earlier vote there: keep it.
                let voted_before = store.votes(voted)?.iter().any(|v| v.node_pubkey == me && v.vote.voting_for_block == b.id);
                if !voted_before {
                    let vote = Vote::new(
                        &node.key,
                        VoteBody {
                            voting_for_block: b.id.clone(),
                            previous_block: previous.clone(),
                            is_block_valid: is_valid,
                            invalid_reason: reason,
                            timestamp: block::timestamp(),
                        },
                    );
                    node.engine.append_vote(voted, &vote)?;
                    node.stats.votes[usize::from(!is_valid)].fetch_add(1, Ordering::Relaxed);
                }
                store.set_cursor(cursor::VOTED, voted + 1)?;
                previous = b.id.clone();
                undecided.insert(voted, PendingBlock { seen: Instant::now(), block: b, txs, valid });
                voted += 1;
                progressed = true;
            }
        }
        // Apply decisions strictly in block order.
        while let Some(p) = undecided.blocks.get(&applied) {
            let votes = store.votes(applied)?;
            let d = block::tally(&p.block, &votes, &node.federation);
            if d == Decision::Undecided {
                break;
            }
            let mut p = undecided.take(applied).expect("present");
            node.stats.decided[usize::from(d != Decision::Valid)].fetch_add(1, Ordering::Relaxed);
            if d == Decision::Valid {
                if p.txs.len() != p.block.block.transactions.len() {
                    // The majority accepted a block this node rejected before reading it.
                    let Some((txs, _)) = wait_for(node, || load_txs(node, &p.block))? else { return Ok(()) };
                    p.txs = txs;
                }
                store.apply(applied, Decision::Valid, &p.txs)?;
                node.stats.committed.fetch_add(p.txs.len() as u64, Ordering::Relaxed);
                let mut inflight = node.inflight.lock().expect("inflight lock");
                for t in &p.txs {
                    inflight.remove(t);
                }
                drop(inflight);
                for t in &p.txs {
                    let _ = node.events.send(commit_event(&t.id, &t.asset_id, &p.block.id, applied));
                    node.decided(t, Decision::Valid);
                }
            } else {
                store.apply::<Transaction>(applied, Decision::Invalid, &[])?;
                let mut again = Vec::new();
                let mut inflight = node.inflight.lock().expect("inflight lock");
                // Invalid in this node's own eyes too (a neighbour was invalid): no disagreement.
                let explained = p.valid.iter().any(|ok| !ok);
                for (t, ok) in p.txs.iter().zip(&p.valid) {
                    let times = requeued.entry(t.id.clone()).or_default();
                    if *ok && (explained || *times < MAX_REQUEUES) {
                        *times += u32::from(!explained);
                        again.push((t.id.clone(), t.canonical().into_bytes()));
                    } else if undecided.holds(&t.id) {
                        // A duplicate here of a copy that is valid in a later undecided block:
                        // that block decides it (see `Undecided`).
                    } else {
                        inflight.remove(t);
                        node.decided(t, Decision::Invalid);
                    }
                }
                drop(inflight);
                if !again.is_empty() {
                    node.stats.requeued.fetch_add(again.len() as u64, Ordering::Relaxed);
                    tracing::warn!(height = applied, count = again.len(), "block decided invalid; returning its valid transactions to the backlog");
                    node.engine.append_backlog(p.block.block.partition, &again, Some(&p.block.id))?;
                    node.new_backlog.notify();
                }
            }
            node.metrics.time(metrics::name::BLOCK_DECISION_US, p.seen.elapsed().as_micros() as u64);
            applied += 1;
            node.stats.applied_height.store(applied, Ordering::Relaxed);
            progressed = true;
        }
        if !progressed {
            node.caught_up.store(true, Ordering::Release);
            node.new_block.wait(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The websocket stream's event for a transaction committed at `height`: the text serde_json
/// writes for `{"transaction_id", "asset_id", "block_id", "height"}` (keys sorted), written
/// directly. Building a `Value` for it cost the consensus thread ~12 allocations per committed
/// transaction. The ids are lower-case hex (checked at parse, or made by this node), so nothing
/// needs escaping.
pub fn commit_event(tx_id: &str, asset_id: &str, block_id: &str, height: u64) -> Arc<str> {
    use std::fmt::Write;
    let mut text = String::with_capacity(80 + tx_id.len() + asset_id.len() + block_id.len());
    let _ = write!(text, r#"{{"asset_id":"{asset_id}","block_id":"{block_id}","height":{height},"transaction_id":"{tx_id}"}}"#);
    Arc::from(text)
}

/// Retries `f` while it answers `None` (data not here yet); `None` if the node stops first.
fn wait_for<T>(node: &Node, mut f: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    while !node.stop.load(Ordering::SeqCst) {
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        node.new_backlog.wait(Duration::from_millis(100));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{PendingBlock, Undecided};
    use crate::block::{Block, BlockBody};
    use crate::crypto::Keypair;
    use crate::tx::{OutputRef, Transaction, TxError};
    use crate::validation::{LedgerView, OutputInfo, Validator};
    use std::sync::Arc;
    use std::time::Instant;

    /// A ledger with nothing committed.
    struct Empty;
    impl LedgerView for Empty {
        fn is_committed(&self, _: &str) -> bool {
            false
        }
        fn output(&self, _: &OutputRef) -> Option<OutputInfo> {
            None
        }
        fn spender(&self, _: &OutputRef) -> Option<String> {
            None
        }
    }

    fn pending(key: &Keypair, tx: &Arc<Transaction>, valid: bool) -> PendingBlock {
        let body = BlockBody { timestamp: "0".into(), transactions: vec![tx.id.clone()], node_pubkey: key.public_b58.clone(), voters: vec![], partition: 0, range: [0, 0] };
        PendingBlock { seen: Instant::now(), block: Block::new(key, body), txs: vec![tx.clone()], valid: vec![valid] }
    }

    /// One transaction in two undecided blocks, a duplicate (invalid) in the first and valid in
    /// the second: deciding the first must leave it in the overlay, or a third copy is voted
    /// valid as well and the transaction ends up in two VALID blocks.
    #[test]
    fn deciding_a_block_keeps_a_transaction_that_is_valid_in_a_later_undecided_one() {
        let key = Keypair::generate();
        let x = Arc::new(Transaction::from_value(crate::workload::create_tx(&key, 1)).unwrap());
        let mut undecided = Undecided::default();
        undecided.insert(10, pending(&key, &x, false));
        undecided.insert(11, pending(&key, &x, true));
        assert!(undecided.take(10).is_some());
        assert!(undecided.holds(&x.id), "still valid in block 11, which is undecided");
        let third = Validator::new().validate_block_with(std::slice::from_ref(&x), &Empty, &undecided.overlay, &|_| false);
        assert!(matches!(&third[0], Err(TxError::DuplicateTransaction(_))), "{third:?}");
        assert!(undecided.take(11).is_some());
        assert!(!undecided.holds(&x.id), "block 11 decided: nothing of it is left");
        let again = Validator::new().validate_block_with(std::slice::from_ref(&x), &Empty, &undecided.overlay, &|_| false);
        assert!(again[0].is_ok(), "{again:?}");
    }

    #[test]
    fn a_commit_event_is_the_json_serde_json_writes_for_it() {
        let (tx, asset, block) = ("ab".repeat(32), "cd".repeat(32), "0f".repeat(32));
        for height in [0, 7, u64::MAX] {
            let by_serde = serde_json::json!({"transaction_id": tx, "asset_id": asset, "block_id": block, "height": height}).to_string();
            assert_eq!(&*super::commit_event(&tx, &asset, &block, height), by_serde);
        }
    }
}
