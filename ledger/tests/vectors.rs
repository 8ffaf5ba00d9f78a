//! Byte-for-byte compatibility with the official driver and the Python `cryptoconditions`
//! package: every vector in `vectors/` was produced by them (`vectors/gen_vectors.py`).

use ledger::cc::{Condition, Details, Fulfillment};
use ledger::crypto::Keypair;
use ledger::tx::{self, Spend, Transaction};
use serde_json::Value;
use std::collections::HashMap;

fn load(name: &str) -> Value {
    let path = format!("{}/../vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[test]
fn canonical_serialization_matches_driver() {
    let vectors = load("serialization.json");
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 8);
    for v in vectors {
        assert_eq!(ledger::canonical::to_string(&v["value"]), v["canonical"].as_str().unwrap());
    }
}

#[test]
fn conditions_and_fulfillments_match_cryptoconditions() {
    for v in load("conditions.json").as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let f = Fulfillment::from_uri(v["fulfillment_uri"].as_str().unwrap()).unwrap();
        let c = f.condition();
        assert_eq!(c.uri(), v["condition_uri"], "{name}: condition uri");
        assert_eq!(hex::encode(c.to_der()), v["condition_binary_hex"], "{name}: condition binary");
        assert_eq!(c.cost, v["cost"].as_u64().unwrap(), "{name}: cost");
        assert_eq!(f.to_uri(), v["fulfillment_uri"], "{name}: re-encoded fulfillment");
        assert_eq!(Condition::parse_uri(v["condition_uri"].as_str().unwrap()).unwrap(), c, "{name}: uri parse");
        // Every signature in the vector verifies over the vector's message.
        let msg: [u8; 32] = hex::decode(v["message_hex"].as_str().unwrap()).unwrap().try_into().unwrap();
        let mut sigs = Vec::new();
        f.collect_signatures(&mut sigs);
        for s in &sigs {
            assert!(ledger::crypto::verify_one(s, &msg), "{name}: signature");
        }
        if let Some(d) = v.get("details").filter(|d| !d.is_null()) {
            assert_eq!(Details::from_json(d).unwrap().condition(), c, "{name}: details");
        }
    }
}

fn keys() -> Vec<Keypair> {
    load("keys.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let kp = Keypair::from_private_b58(k["private_key"].as_str().unwrap()).unwrap();
            assert_eq!(kp.public_b58, k["public_key"].as_str().unwrap());
            kp
        })
        .collect()
}

#[test]
fn driver_transactions_parse_and_verify() {
    let vectors = load("transactions.json");
    for v in vectors.as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let tx = Transaction::from_value(v["tx"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        tx.check_id().unwrap_or_else(|e| panic!("{name}: {e}"));
        let msgs = tx.signing_messages();
        let checks = tx.signature_checks();
        assert!(!checks.is_empty());
        assert!(ledger::crypto::verify_all(&checks, &msgs).iter().all(|ok| *ok), "{name}: signatures");
    }
}

/// Our builder reproduces the driver's transactions exactly: same ids, same fulfillments.
#[test]
fn builder_reproduces_driver_transactions() {
    let k = keys();
    let vectors = load("transactions.json");
    let by_name: HashMap<&str, &Value> =
        vectors.as_array().unwrap().iter().map(|v| (v["name"].as_str().unwrap(), &v["tx"])).collect();
    let pk = |i: usize| k[i].public_bytes();
    let rebuild = |name: &str| -> Value {
        let want = by_name[name];
        let spend = |input: &Value| {
            let f = &input["fulfills"];
            let src = by_name.values().find(|t| t["id"] == f["transaction_id"]).unwrap();
            let out = &src["outputs"][f["output_index"].as_u64().unwrap() as usize];
            Spend {
                fulfills: tx::OutputRef { txid: f["transaction_id"].as_str().unwrap().into(), index: f["output_index"].as_u64().unwrap() as u32 },
                details: Details::from_json(&out["condition"]["details"]).unwrap(),
                owners_before: out["public_keys"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            }
        };
        let recipients: Vec<(Vec<[u8; 32]>, u64)> = want["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let owners = o["public_keys"].as_array().unwrap().iter().map(|s| ledger::crypto::decode_public_key(s.as_str().unwrap()).unwrap()).collect();
                (owners, o["amount"].as_str().unwrap().parse().unwrap())
            })
            .collect();
        let all: Vec<&Keypair> = k.iter().collect();
        if want["operation"] == "CREATE" {
            let signers: Vec<&Keypair> = want["inputs"][0]["owners_before"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| k.iter().find(|kp| kp.public_b58 == o.as_str().unwrap()).unwrap())
                .collect();
            tx::build_create(&signers, &recipients, want["asset"]["data"].clone(), want["metadata"].clone())
        } else {
            let spends: Vec<Spend> = want["inputs"].as_array().unwrap().iter().map(spend).collect();
            tx::build_transfer(&spends, &recipients, want["asset"]["id"].as_str().unwrap(), want["metadata"].clone(), &all)
        }
    };
    let _ = pk;
    for name in by_name.keys() {
        assert_eq!(&rebuild(name), by_name[name], "{name}");
    }
}
