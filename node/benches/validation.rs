//! Hot-path benchmarks: raw Ed25519 verification (the machine's ceiling), transaction id
//! hashing, the ingest verifier's batch split over cores, single-transaction validation and block (1000-tx, batched, all cores)
//! validation, all on the standard ~765-byte CREATE. After the runs it prints each rate
//! and its ratio to the raw single-verify rate measured in the same run.
//!
//! Run: cargo bench -p cairn-node --bench validation

use cairn::crypto::Keypair;
use cairn::store::Store;
use cairn::tx::Transaction;
use cairn::validation::{Overlay, Validator};
use criterion::{black_box, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signer, Verifier};
use std::time::Duration;

const BLOCK: usize = 1000;

fn txs(n: usize) -> (Vec<Vec<u8>>, Vec<Transaction>) {
    let k = Keypair::generate();
    let values: Vec<_> = (0..n as u64).map(|i| cairn::workload::create_tx(&k, i)).collect();
    let bodies = values.iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
    (bodies, values.into_iter().map(|v| Transaction::from_value(v).unwrap()).collect())
}

fn benches(c: &mut Criterion) {
    let key = Keypair::generate();
    let msg = [42u8; 32];
    let sig = key.signing.sign(&msg);
    let vk = key.signing.verifying_key();

    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_strict_1core", |b| b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap()));
    g.bench_function("verify_1core", |b| b.iter(|| vk.verify(black_box(&msg), &sig).unwrap()));
    let keys: Vec<Keypair> = (0..BLOCK).map(|_| Keypair::generate()).collect();
    let sigs: Vec<_> = keys.iter().map(|k| k.signing.sign(&msg)).collect();
    let vks: Vec<_> = keys.iter().map(|k| k.signing.verifying_key()).collect();
    let msgs: Vec<&[u8]> = vec![&msg[..]; BLOCK];
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.bench_function("verify_strict_1000_all_cores", |b| {
        use rayon::prelude::*;
        b.iter(|| (0..BLOCK).into_par_iter().for_each(|i| vks[i].verify_strict(&msg, &sigs[i]).unwrap()))
    });
    g.bench_function("verify_batch_1000_1core", |b| b.iter(|| ed25519_dalek::verify_batch(&msgs, &sigs, &vks).unwrap()));
    // What the node's ingest verifier does with a full batch: split over the cores.
    let checks: Vec<(cairn::cc::SigCheck, usize)> =
        keys.iter().zip(&sigs).map(|(k, s)| (cairn::cc::SigCheck { public_key: k.public_bytes(), signature: s.to_bytes() }, 0)).collect();
    g.bench_function("verify_all_par_1000_all_cores", |b| {
        b.iter(|| assert!(cairn::crypto::verify_all_par(black_box(&checks), &[msg]).iter().all(|ok| *ok)))
    });
    g.finish();

    let (bodies, parsed) = txs(BLOCK);
    let mut g = c.benchmark_group("tx");
    g.throughput(Throughput::Elements(1));
    // The id (and the other canonical forms) are made once per transaction and kept: each
    // iteration gets a freshly parsed transaction so that the hashing is measured every time.
    g.bench_function("id_hash", |b| {
        b.iter_batched(|| Transaction::from_value(parsed[0].raw.clone()).unwrap(), |t| t.check_id().unwrap(), BatchSize::SmallInput)
    });
    g.bench_function("json_value", |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bodies[0])).unwrap()));
    g.bench_function("parse", |b| b.iter(|| Transaction::parse(black_box(&bodies[0])).unwrap()));
    let v = Validator::new();
    g.bench_function("validate_single", |b| {
        b.iter(|| {
            let t = Transaction::parse(black_box(&bodies[1])).unwrap();
            v.check_stateless(&t).unwrap();
        })
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("bench")).unwrap();
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.sample_size(20);
    g.bench_function("validate_1000_all_cores", |b| {
        b.iter_batched(
            || bodies.clone(),
            |bodies| {
                let txs: Vec<Transaction> = bodies.iter().map(|b| Transaction::parse(b).unwrap()).collect();
                let r = v.validate_block(&txs, &store, &Overlay::default());
                assert!(r.iter().all(Result::is_ok));
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Mean time per iteration (ns) of one benchmark, from criterion's output.
fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let text = std::fs::read_to_string(format!("{dir}/criterion/{group}/{name}/new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    let Some(raw) = mean_ns("ed25519", "verify_strict_1000_all_cores") else { return };
    let raw_rate = BLOCK as f64 * 1e9 / raw;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("\n== Summary ({cores} cores, tx = {} B CREATE) ==", cairn::workload::TX_BYTES);
    println!("{:<34} {:>14} {:>22}", "benchmark", "per second", "ratio to machine raw");
    let rows = [
        ("ed25519", "verify_strict_1000_all_cores", BLOCK as f64, "raw Ed25519 verify (all cores)"),
        ("ed25519", "verify_strict_1core", 1.0, "raw Ed25519 verify (1 core)"),
        ("ed25519", "verify_batch_1000_1core", BLOCK as f64, "batch verify sigs (1 core)"),
        ("ed25519", "verify_all_par_1000_all_cores", BLOCK as f64, "ingest batch verify (all cores)"),
        ("tx", "id_hash", 1.0, "tx id hash (canonical forms)"),
        ("tx", "json_value", 1.0, "JSON body -> serde_json::Value"),
        ("tx", "parse", 1.0, "parse + schema checks"),
        ("tx", "validate_single", 1.0, "parse + validate 1 tx (1 core)"),
        ("block", "validate_1000_all_cores", BLOCK as f64, "block validation tx (all cores)"),
    ];
    for (g, n, per_iter, label) in rows {
        if let Some(ns) = mean_ns(g, n) {
            let rate = per_iter * 1e9 / ns;
            println!("{label:<34} {rate:>14.0} {:>21.2}x", rate / raw_rate);
        }
    }
    println!("(ratio = rate / raw strict single-signature verification on all cores, same run)");
}

fn main() {
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).configure_from_args();
    benches(&mut c);
    c.final_summary();
    report();
}
