//! The standard benchmark transaction: a CREATE of about 765 bytes (canonical JSON), the
//! size BigchainDB's published benchmarks used, so figures compare. Shared by the criterion
//! bench and `loadgen`, so both measure the same thing.

use crate::crypto::Keypair;
use crate::tx;
use serde_json::{json, Value};

/// Target canonical size in bytes.
pub const TX_BYTES: usize = 765;

/// A signed CREATE of ~765 bytes, unique per (`key`, `seq`).
pub fn create_tx(key: &Keypair, seq: u64) -> Value {
    create_tx_sized(key, seq, TX_BYTES)
}

/// A signed CREATE padded to `bytes` of canonical JSON (or its minimum size, ~600 bytes, when
/// `bytes` is smaller), unique per (`key`, `seq`): loadgen's `--tx-bytes`.
pub fn create_tx_sized(key: &Keypair, seq: u64, bytes: usize) -> Value {
    let make = |pad: usize| {
        tx::build_create(
            &[key],
            &[(vec![key.public_bytes()], 1)],
            json!({"bench": "cairn", "seq": seq, "pad": "x".repeat(pad)}),
            json!({"run": "loadgen"}),
        )
    };
    let base = make(0);
    let len = crate::canonical::to_string(&base).len();
    if len >= bytes {
        base
    } else {
        make(bytes - len)
    }
}

/// A signed TRANSFER of output 0 of `spent` (a CREATE or TRANSFER whose output 0 `owner` holds,
/// amount 1) back to `owner`; `tag` goes into the metadata so two spends of one output (a
/// double-spend pair) have different ids. Chains of these are loadgen's TRANSFER workload.
pub fn transfer_tx(owner: &Keypair, spent: &Value, tag: &str) -> Value {
    let txid = spent["id"].as_str().expect("a signed transaction has an id").to_string();
    let asset_id = match spent["operation"].as_str() {
        Some("CREATE") => txid.clone(),
        _ => spent["asset"]["id"].as_str().expect("a TRANSFER names its asset").to_string(),
    };
    let spend = tx::Spend {
        fulfills: tx::OutputRef { txid, index: 0 },
        details: tx::details_for(&[owner.public_bytes()]),
        owners_before: vec![owner.public_b58.clone()],
    };
    tx::build_transfer(&[spend], &[(vec![owner.public_bytes()], 1)], &asset_id, json!({"run": "loadgen", "tag": tag}), &[owner])
}

#[cfg(test)]
mod tests {
    #[test]
    fn benchmark_transactions_are_765_bytes_and_valid() {
        let k = crate::crypto::Keypair::generate();
        for seq in [0, 9, 123_456_789] {
            let v = super::create_tx(&k, seq);
            assert_eq!(crate::canonical::to_string(&v).len(), super::TX_BYTES);
            let t = crate::tx::Transaction::from_value(v).unwrap();
            crate::validation::Validator::new().check_stateless(&t).unwrap();
        }
        let sized = super::create_tx_sized(&k, 1, 2000);
        assert_eq!(crate::canonical::to_string(&sized).len(), 2000);
    }

    #[test]
    fn transfers_spend_output_zero_and_chain() {
        let k = crate::crypto::Keypair::from_seed([7; 32]);
        let c = super::create_tx(&k, 1);
        let t1 = super::transfer_tx(&k, &c, "a");
        let t2 = super::transfer_tx(&k, &t1, "a");
        let other = super::transfer_tx(&k, &c, "b");
        assert_ne!(t1["id"], other["id"]);
        assert_eq!(t1["inputs"][0]["fulfills"]["transaction_id"], c["id"]);
        assert_eq!((t2["asset"]["id"].clone(), t2["inputs"][0]["fulfills"]["transaction_id"].clone()), (c["id"].clone(), t1["id"].clone()));
        for t in [t1, t2, other] {
            let t = crate::tx::Transaction::from_value(t).unwrap();
            crate::validation::Validator::new().check_stateless(&t).unwrap();
        }
    }
}
