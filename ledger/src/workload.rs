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
    if len >= TX_BYTES {
        base
    } else {
        make(TX_BYTES - len)
    }
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
    }
}
