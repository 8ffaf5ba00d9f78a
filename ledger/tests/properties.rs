//! Property tests for the parsers and encoders on the hot path.

use ledger::cc::{Condition, Details, Fulfillment};
use ledger::crypto::Keypair;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Guard: if any dependency turns on serde_json's `preserve_order`, maps keep insertion order
/// and every transaction id changes. This fails loudly first.
#[test]
fn serde_json_maps_stay_sorted() {
    let mut m = Map::new();
    m.insert("b".into(), Value::Null);
    m.insert("a".into(), Value::Null);
    assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"], "serde_json/preserve_order is enabled somewhere in the dependency tree");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Canonical text parses back to the same value, and is a fixed point.
    #[test]
    fn canonical_round_trips(v in json_value()) {
        let s = ledger::canonical::to_string(&v);
        let back: Value = serde_json::from_str(&s).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(ledger::canonical::to_string(&back), s);
    }

    /// Arbitrary bytes never panic the fulfillment parser, and whatever parses re-encodes to
    /// the same bytes (one encoding per fulfillment).
    #[test]
    fn fulfillment_parser_is_total_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(f) = Fulfillment::from_der(&bytes) {
            let _ = f.condition();
            if f.to_der() == bytes {
                prop_assert_eq!(Fulfillment::from_der(&f.to_der()).unwrap(), f);
            }
        }
    }

    /// Arbitrary bodies never panic the transaction parser.
    #[test]
    fn transaction_parser_is_total(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = ledger::tx::Transaction::parse(&bytes);
    }

    /// Arbitrary JSON never panics the transaction parser.
    #[test]
    fn transaction_parser_is_total_on_json(v in json_value()) {
        let _ = ledger::tx::Transaction::from_value(v);
    }

    /// Condition URIs round-trip, and a signed m-of-n threshold fulfillment re-encodes and
    /// yields the condition of its details.
    #[test]
    fn threshold_trees_round_trip(n in 1usize..6, m_seed in any::<usize>(), signers_seed in any::<u64>()) {
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
        let m = 1 + m_seed % n;
        let details = Details::Threshold { threshold: m as u64, subconditions: keys.iter().map(|k| Details::Ed25519(k.public_bytes())).collect() };
        let cond = details.condition();
        prop_assert_eq!(Condition::parse_uri(&cond.uri()).unwrap(), cond.clone());
        // sign with a random subset of at least m keys
        let mut chosen: Vec<&Keypair> = keys.iter().enumerate().filter(|(i, _)| signers_seed >> i & 1 == 1).map(|(_, k)| k).collect();
        for k in &keys { if chosen.len() < m && !chosen.iter().any(|c| c.public_b58 == k.public_b58) { chosen.push(k) } }
        let map = chosen.iter().map(|k| (k.public_bytes(), k.signing.clone())).collect();
        let f = details.sign(&[7u8; 32], &map).unwrap();
        prop_assert_eq!(f.condition(), cond);
        let reparsed = Fulfillment::from_uri(&f.to_uri()).unwrap();
        prop_assert_eq!(reparsed.to_uri(), f.to_uri());
        prop_assert_eq!(reparsed.condition(), f.condition());
        let mut sigs = Vec::new();
        f.collect_signatures(&mut sigs);
        prop_assert_eq!(sigs.len(), m);
    }
}
