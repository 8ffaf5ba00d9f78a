//! Where a transaction's CPU goes: the single node's pipeline cut into stages, each run over
//! the same standard ~765-byte CREATEs with the node's own code (parse, checks, the embedded
//! engine's store, block and vote models), in the order the node runs them.
//!
//! Two measures per stage, both per transaction:
//! - CPU µs (process CPU time over all threads, so rayon's block validation counts fully),
//!   from a native run of `--txs` transactions (default 20,000);
//! - instructions, when run under `valgrind --tool=callgrind` with `--upto STAGE`: the stages
//!   run cumulatively, so stage k costs total(upto k) − total(upto k−1), independent of the
//!   machine's load (`scripts/bench-stages.sh` does this).
//!
//! What is not here: HTTP and the async runtime (measured by `scripts/bench-node.sh` as the
//! node process's CPU per committed transaction minus this sum), and the JetStream engine.
//!
//! Run: cargo bench -p cairn-node --bench stages [-- --txs N] [--upto STAGE] [--json FILE]

use cairn::block::{self, Block, BlockBody, Decision, Vote, VoteBody};
use cairn::crypto::Keypair;
use cairn::engine::{Embedded, Engine};
use cairn::store::{cursor, Store};
use cairn::tx::Transaction;
use cairn::validation::{Overlay, Validator};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

/// The stages, in pipeline order, with what each includes.
const STAGES: [(&str, &str); 10] = [
    ("parse", "JSON body → Transaction (schema checks)"),
    ("id_hash", "id = SHA3 of the canonical form, intrinsic checks"),
    ("signatures", "Ed25519 checks, batches of ≤ 1024 on one thread (the ingest verifier)"),
    ("stateful", "inputs/duplicates against the store + in-flight overlay"),
    ("backlog_write", "canonical JSON + embedded backlog append, groups of 256, fsync each"),
    ("block_build", "read backlog range, skip committed ids, sign header, append"),
    ("vote", "validate the block (ingest-verified objects: stateful only), sign and append vote"),
    ("tally", "read votes, majority tally"),
    ("apply", "commit state and indexes (outputs, spends, key/asset/word indexes, digest)"),
    ("events", "websocket event JSON per transaction"),
];

/// Transactions per backlog group commit (the backlog writer's batches under load).
const GROUP: usize = 256;
/// Transactions per block (config default `block.max_txs`).
const BLOCK: usize = 1000;

/// Process CPU time (all threads), in µs.
fn cpu_us() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

struct Ctx {
    key: Keypair,
    store: Arc<Store>,
    engine: Embedded,
    validator: Validator,
    overlay: Overlay,
    bodies: Vec<Vec<u8>>,
    txs: Vec<Arc<Transaction>>,
    blocks: Vec<(u64, Block)>,
}

#[inline(never)]
fn stage_parse(c: &mut Ctx) {
    c.txs = c.bodies.iter().map(|b| Arc::new(Transaction::parse(b).expect("parses"))).collect();
}

#[inline(never)]
fn stage_id_hash(c: &mut Ctx) {
    for t in &c.txs {
        t.check_intrinsic().expect("intrinsic");
    }
}

#[inline(never)]
fn stage_signatures(c: &mut Ctx) {
    for chunk in c.txs.chunks(1024) {
        let (mut checks, mut msgs) = (Vec::new(), Vec::new());
        for t in chunk {
            let base = msgs.len();
            msgs.extend_from_slice(&t.signing_messages());
            checks.extend(t.signature_checks().into_iter().map(|(s, m)| (s, base + m)));
        }
        assert!(cairn::crypto::verify_all(&checks, &msgs).iter().all(|ok| *ok));
    }
}

#[inline(never)]
fn stage_stateful(c: &mut Ctx) {
    for t in &c.txs {
        c.validator.check_stateful(t, &*c.store, &c.overlay, false).expect("stateful");
        assert!(!c.store.in_backlog(&t.id).expect("store"));
        c.overlay.add(t);
    }
}

#[inline(never)]
fn stage_backlog_write(c: &mut Ctx) {
    for chunk in c.txs.chunks(GROUP) {
        let items: Vec<(String, Vec<u8>)> = chunk.iter().map(|t| (t.id.clone(), t.canonical().into_bytes())).collect();
        c.engine.append_backlog(0, &items, None).expect("append");
    }
}

#[inline(never)]
fn stage_block_build(c: &mut Ctx) {
    let mut next = c.store.partition_cursor(cursor::BUILT_UPTO, 0).expect("cursor");
    loop {
        let entries = c.store.backlog_ids(0, next, BLOCK).expect("backlog");
        let Some(last) = entries.last().map(|e| e.0) else { break };
        let first = entries[0].0;
        let mut ids = Vec::with_capacity(entries.len());
        let mut seen = HashSet::with_capacity(entries.len());
        for (_, id) in entries {
            if c.store.committed_height(&id).expect("store").is_none() && seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        let body = BlockBody { timestamp: block::timestamp(), transactions: ids, node_pubkey: c.key.public_b58.clone(), voters: vec![c.key.public_b58.clone()], partition: 0, range: [first, last] };
        let b = Block::new(&c.key, body);
        let height = c.store.cursor(cursor::BLOCK_NEXT).expect("cursor");
        c.engine.append_block(&b).expect("append block");
        c.blocks.push((height, b));
        next = last + 1;
    }
}

#[inline(never)]
fn stage_vote(c: &mut Ctx) {
    let mut previous = "genesis".to_string();
    let mut overlay = Overlay::default();
    for (i, (height, b)) in c.blocks.iter().enumerate() {
        assert!(b.verify());
        let txs = &c.txs[i * BLOCK..(i * BLOCK + b.block.transactions.len())];
        let results = c.validator.validate_block_with(txs, &*c.store, &overlay, &|_| true);
        assert!(results.iter().all(Result::is_ok));
        txs.iter().for_each(|t| overlay.add(t));
        let vote = Vote::new(&c.key, VoteBody { voting_for_block: b.id.clone(), previous_block: previous.clone(), is_block_valid: true, invalid_reason: None, timestamp: block::timestamp() });
        c.engine.append_vote(*height, &vote).expect("append vote");
        previous = b.id.clone();
    }
}

#[inline(never)]
fn stage_tally(c: &mut Ctx) {
    for (height, b) in &c.blocks {
        let votes = c.store.votes(*height).expect("votes");
        assert_eq!(block::tally(b, &votes, std::slice::from_ref(&c.key.public_b58)), Decision::Valid);
    }
}

#[inline(never)]
fn stage_apply(c: &mut Ctx) {
    for (i, (height, b)) in c.blocks.iter().enumerate() {
        let txs = &c.txs[i * BLOCK..(i * BLOCK + b.block.transactions.len())];
        c.store.apply(*height, Decision::Valid, txs).expect("apply");
    }
}

#[inline(never)]
fn stage_events(c: &mut Ctx) {
    for (i, (height, b)) in c.blocks.iter().enumerate() {
        for t in &c.txs[i * BLOCK..(i * BLOCK + b.block.transactions.len())] {
            black_box(cairn::node::commit_event(&t.id, &t.asset_id, &b.id, *height));
        }
    }
}

fn run_stage(name: &str, c: &mut Ctx) {
    match name {
        "parse" => stage_parse(c),
        "id_hash" => stage_id_hash(c),
        "signatures" => stage_signatures(c),
        "stateful" => stage_stateful(c),
        "backlog_write" => stage_backlog_write(c),
        "block_build" => stage_block_build(c),
        "vote" => stage_vote(c),
        "tally" => stage_tally(c),
        "apply" => stage_apply(c),
        "events" => stage_events(c),
        other => unreachable!("unknown stage {other}"),
    }
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("stages [--txs N] [--upto STAGE|none] [--json FILE]\nstages: {}", STAGES.map(|s| s.0).join(", "));
        return;
    }
    // `cargo bench` passes --bench; ignore what is not ours.
    let n: usize = arg(&args, "--txs").map(|s| s.parse().expect("--txs takes a number")).unwrap_or(20_000);
    let upto = arg(&args, "--upto");
    if let Some(u) = &upto {
        assert!(u == "none" || STAGES.iter().any(|s| s.0 == u), "--upto {u}: use none or one of {}", STAGES.map(|s| s.0).join(", "));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("db")).expect("store"));
    let key = Keypair::from_seed([7; 32]);
    let signer = Keypair::from_seed([9; 32]);
    let bodies: Vec<Vec<u8>> = (0..n as u64).map(|i| serde_json::to_vec(&cairn::workload::create_tx(&signer, i)).expect("json")).collect();
    let mean_bytes = bodies.iter().map(Vec::len).sum::<usize>() / n.max(1);
    let mut c = Ctx { key, engine: Embedded::new(store.clone()), store, validator: Validator::new(), overlay: Overlay::default(), bodies, txs: vec![], blocks: vec![] };
    let mut rows = Vec::new();
    for (name, what) in STAGES {
        if upto.as_deref() == Some("none") {
            break;
        }
        let (cpu, wall) = (cpu_us(), std::time::Instant::now());
        run_stage(name, &mut c);
        let (cpu, wall) = (cpu_us() - cpu, wall.elapsed().as_secs_f64() * 1e6);
        rows.push(serde_json::json!({"stage": name, "includes": what, "cpu_us_per_tx": cpu / n as f64, "wall_us_per_tx": wall / n as f64}));
        if upto.as_deref() == Some(name) {
            break;
        }
    }
    if upto.is_some() {
        return; // a callgrind step: only the instruction total matters
    }
    let total: f64 = rows.iter().map(|r| r["cpu_us_per_tx"].as_f64().unwrap_or(0.0)).sum();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("{n} CREATEs of {mean_bytes} B, embedded engine, {cores} cores, {BLOCK}-tx blocks, backlog groups of {GROUP}");
    println!("{:<14} {:>12} {:>12}  includes", "stage", "CPU µs/tx", "wall µs/tx");
    for r in &rows {
        println!("{:<14} {:>12.2} {:>12.2}  {}", r["stage"].as_str().unwrap_or(""), r["cpu_us_per_tx"].as_f64().unwrap_or(0.0), r["wall_us_per_tx"].as_f64().unwrap_or(0.0), r["includes"].as_str().unwrap_or(""));
    }
    println!("{:<14} {total:>12.2}  → at most {:.0} tx/s per core for these stages", "sum", 1e6 / total);
    if let Some(path) = arg(&args, "--json") {
        let doc = serde_json::json!({"txs": n, "tx_bytes": mean_bytes, "cores": cores, "block_txs": BLOCK, "backlog_group": GROUP, "stages": rows, "cpu_us_per_tx_sum": total});
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("writing --json");
        println!("wrote {path}");
    }
}
