//! Every validation rule, exercised against the real embedded store (committed state is made
//! by applying blocks, exactly as the node does).

use cairn::block::Decision;
use cairn::cc::{Condition, Details, Fulfillment};
use cairn::crypto::Keypair;
use cairn::store::Store;
use cairn::tx::{self, OutputRef, Spend, Transaction, TxError};
use cairn::validation::{LedgerView, Overlay, Rule, Validator};
use serde_json::{json, Value};
use std::sync::Arc;

struct Ledger {
    _dir: tempfile::TempDir,
    store: Store,
    height: u64,
}

impl Ledger {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        Ledger { _dir: dir, store, height: 0 }
    }

    /// Commits transactions as a VALID block would.
    fn commit(&mut self, txs: &[&Value]) {
        let parsed: Vec<Transaction> = txs.iter().map(|v| Transaction::from_value((*v).clone()).unwrap()).collect();
        let items: Vec<(String, Vec<u8>)> = parsed.iter().map(|t| (t.id.clone(), t.canonical().into_bytes())).collect();
        self.store.append_backlog(0, &items, false).unwrap();
        self.store.apply(self.height, Decision::Valid, &parsed).unwrap();
        self.height += 1;
    }
}

fn parse(v: &Value) -> Transaction {
    Transaction::from_value(v.clone()).unwrap()
}

fn check(ledger: &Ledger, v: &Value) -> Result<(), TxError> {
    Validator::new().validate(&parse(v), &ledger.store, &Overlay::default(), false)
}

fn create(owner: &Keypair, amount: u64) -> Value {
    tx::build_create(&[owner], &[(vec![owner.public_bytes()], amount)], json!({"n": rand_u64()}), Value::Null)
}

fn rand_u64() -> u64 {
    use rand::RngCore;
    rand::rngs::OsRng.next_u64()
}

fn spend_of(tx: &Value, index: usize) -> Spend {
    let out = &tx["outputs"][index];
    Spend {
        fulfills: OutputRef { txid: tx["id"].as_str().unwrap().into(), index: index as u32 },
        details: Details::from_json(&out["condition"]["details"]).unwrap(),
        owners_before: out["public_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect(),
    }
}

fn asset_of(tx: &Value) -> String {
    tx["asset"]["id"].as_str().or(tx["id"].as_str()).unwrap().to_string()
}

fn transfer(from: &Value, index: usize, signer: &Keypair, to: &Keypair, amount: u64) -> Value {
    tx::build_transfer(&[spend_of(from, index)], &[(vec![to.public_bytes()], amount)], &asset_of(from), Value::Null, &[signer])
}

fn class(r: Result<(), TxError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => e.class(),
    }
}

#[test]
fn create_valid_and_duplicate() {
    let mut l = Ledger::new();
    let a = Keypair::generate();
    let c = create(&a, 1);
    assert_eq!(class(check(&l, &c)), "ok");
    l.commit(&[&c]);
    assert_eq!(class(check(&l, &c)), "DuplicateTransaction");
}

#[test]
fn transfer_rules() {
    let mut l = Ledger::new();
    let (a, b, c) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let coin = create(&a, 10);
    // input does not exist until committed
    let t = transfer(&coin, 0, &a, &b, 10);
    assert_eq!(class(check(&l, &t)), "InputDoesNotExist");
    l.commit(&[&coin]);
    assert_eq!(class(check(&l, &t)), "ok");
    // output index out of range
    let mut bad_index = spend_of(&coin, 0);
    bad_index.fulfills.index = 5;
    let t_bad = tx::build_transfer(&[bad_index], &[(vec![b.public_bytes()], 10)], &asset_of(&coin), Value::Null, &[&a]);
    assert_eq!(class(check(&l, &t_bad)), "InputDoesNotExist");
    // amounts must balance
    assert_eq!(class(check(&l, &transfer(&coin, 0, &a, &b, 9))), "AmountError");
    assert_eq!(class(check(&l, &transfer(&coin, 0, &a, &b, 11))), "AmountError");
    // signed by the wrong key: the fulfillment's condition is not the output's
    let mut wrong = spend_of(&coin, 0);
    wrong.details = Details::Ed25519(c.public_bytes());
    let t_wrong = tx::build_transfer(&[wrong], &[(vec![b.public_bytes()], 10)], &asset_of(&coin), Value::Null, &[&c]);
    assert_eq!(class(check(&l, &t_wrong)), "InvalidSignature");
    // asset id must match the inputs' asset
    let other = create(&a, 1);
    l.commit(&[&other]);
    let mismatched = tx::build_transfer(&[spend_of(&coin, 0)], &[(vec![b.public_bytes()], 10)], other["id"].as_str().unwrap(), Value::Null, &[&a]);
    assert_eq!(class(check(&l, &mismatched)), "AssetIdMismatch");
    // the same input twice in one transaction
    let twice = tx::build_transfer(&[spend_of(&coin, 0), spend_of(&coin, 0)], &[(vec![b.public_bytes()], 20)], &asset_of(&coin), Value::Null, &[&a]);
    assert_eq!(class(check(&l, &twice)), "DoubleSpend");
    // committed spend, then a second spend of the same output
    l.commit(&[&t]);
    assert_eq!(class(check(&l, &transfer(&coin, 0, &a, &c, 10))), "DoubleSpend");
    assert_eq!(l.store.spender(&spend_of(&coin, 0).fulfills).as_deref(), t["id"].as_str());
    // the new owner can move it on
    assert_eq!(class(check(&l, &transfer(&t, 0, &b, &c, 10))), "ok");
}

#[test]
fn tampering_is_caught() {
    let l = Ledger::new();
    let a = Keypair::generate();
    let mut c = create(&a, 1);
    c["metadata"] = json!({"x": 1});
    assert_eq!(class(check(&l, &c)), "InvalidHash");
    // re-hash after tampering: id is right, signature is not
    tx::set_id(&mut c);
    assert_eq!(class(check(&l, &c)), "InvalidSignature");
}

#[test]
fn schema_errors_name_the_field() {
    let a = Keypair::generate();
    let good = create(&a, 1);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|v| v["version"] = json!("1.0")), "version"),
        (Box::new(|v| v["operation"] = json!("GENESIS")), "operation"),
        (Box::new(|v| v["extra"] = json!(1)), "'extra' was unexpected"),
        (Box::new(|v| v["metadata"] = json!({})), "metadata"),
        (Box::new(|v| v["outputs"] = json!([])), "outputs"),
        (Box::new(|v| v["inputs"][0]["owners_before"] = json!(["0OIl"])), "owners_before"),
        (Box::new(|v| v["outputs"][0]["condition"]["uri"] = json!("ni:///sha-256;AAAA?fpt=ed25519-sha-256&cost=131072")), "condition"),
        (Box::new(|v| v["inputs"][0]["fulfills"] = json!({"transaction_id": "a", "output_index": 0})), "fulfills"),
        (Box::new(|v| { v.as_object_mut().unwrap().remove("asset"); }), "'asset' is a required property"),
    ];
    for (edit, needle) in cases {
        let mut v = good.clone();
        edit(&mut v);
        let e = Transaction::from_value(v).expect_err(needle);
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    for amount in [json!("0"), json!(1), json!("9000000000000000001"), json!("-1"), json!("1.5")] {
        let mut v = good.clone();
        v["outputs"][0]["amount"] = amount.clone();
        assert_eq!(Transaction::from_value(v).unwrap_err().class(), "AmountError", "{amount}");
    }
}

#[test]
fn double_spend_inside_one_block_keeps_only_the_first() {
    let mut l = Ledger::new();
    let (a, b, c) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let coin = create(&a, 3);
    l.commit(&[&coin]);
    let t1 = parse(&transfer(&coin, 0, &a, &b, 3));
    let t2 = parse(&transfer(&coin, 0, &a, &c, 3));
    let fresh = parse(&create(&b, 1));
    let r = Validator::new().validate_block(&[t1.clone(), t2, fresh.clone(), t1], &l.store, &Overlay::default());
    let classes: Vec<&str> = r.into_iter().map(class).collect();
    assert_eq!(classes, ["ok", "DoubleSpend", "ok", "DuplicateTransaction"]);
}

#[test]
fn chained_spend_inside_one_block() {
    let mut l = Ledger::new();
    let (a, b, c) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let coin = create(&a, 2);
    let t1 = transfer(&coin, 0, &a, &b, 2);
    let t2 = transfer(&t1, 0, &b, &c, 2);
    let r = Validator::new().validate_block(&[parse(&coin), parse(&t1), parse(&t2)], &l.store, &Overlay::default());
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    // out of order, the spend of a not-yet-seen output fails
    let r = Validator::new().validate_block(&[parse(&t2), parse(&coin), parse(&t1)], &l.store, &Overlay::default());
    assert_eq!(class(r[0].clone()), "InputDoesNotExist");
    l.commit(&[&coin]);
}

#[test]
fn block_batch_verification_flags_exactly_the_bad_signature() {
    let l = Ledger::new();
    let keys: Vec<Keypair> = (0..200).map(|_| Keypair::generate()).collect();
    let mut txs: Vec<Transaction> = keys.iter().map(|k| parse(&create(k, 1))).collect();
    // Forge input 0 of tx 137: a signature by another key over the right message.
    let mut raw = txs[137].raw.clone();
    let msg = txs[137].signing_messages()[0];
    use ed25519_dalek::Signer;
    let sig = keys[3].signing.sign(&msg).to_bytes();
    let f = Fulfillment::Ed25519 { public_key: keys[137].public_bytes(), signature: sig };
    raw["inputs"][0]["fulfillment"] = json!(f.to_uri());
    tx::set_id(&mut raw);
    txs[137] = parse(&raw);
    let r = Validator::new().validate_block(&txs, &l.store, &Overlay::default());
    for (i, res) in r.iter().enumerate() {
        assert_eq!(res.is_ok(), i != 137, "tx {i}: {res:?}");
    }
}

#[test]
fn threshold_outputs_need_enough_signers() {
    let mut l = Ledger::new();
    let (a, b, c, d) = (Keypair::generate(), Keypair::generate(), Keypair::generate(), Keypair::generate());
    // 2-of-3 output built by hand from details
    let details = Details::Threshold {
        threshold: 2,
        subconditions: vec![Details::Ed25519(a.public_bytes()), Details::Ed25519(b.public_bytes()), Details::Ed25519(c.public_bytes())],
    };
    let mut coin = tx::build_create(&[&a], &[(vec![a.public_bytes(), b.public_bytes(), c.public_bytes()], 5)], json!({"k": "t"}), Value::Null);
    coin["outputs"][0]["condition"] = json!({"details": details.to_json(), "uri": details.condition().uri()});
    // re-sign: the output changed, so the CREATE signature must be redone
    let msg = parse(&{ let mut x = coin.clone(); tx::set_id(&mut x); x }).signing_messages()[0];
    let keys: std::collections::HashMap<[u8; 32], ed25519_dalek::SigningKey> = [(a.public_bytes(), a.signing.clone())].into();
    coin["inputs"][0]["fulfillment"] = json!(Details::Ed25519(a.public_bytes()).sign(&msg, &keys).unwrap().to_uri());
    tx::set_id(&mut coin);
    assert_eq!(class(check(&l, &coin)), "ok");
    l.commit(&[&coin]);
    let spend = spend_of(&coin, 0);
    let to = |k: &Keypair| vec![(vec![k.public_bytes()], 5u64)];
    let by_b_c = tx::build_transfer(std::slice::from_ref(&spend), &to(&d), &asset_of(&coin), Value::Null, &[&b, &c]);
    assert_eq!(class(check(&l, &by_b_c)), "ok");
    let by_all = tx::build_transfer(std::slice::from_ref(&spend), &to(&d), &asset_of(&coin), Value::Null, &[&a, &b, &c]);
    assert_eq!(class(check(&l, &by_all)), "ok");
    // one signer only: build 1-of-3 fulfillment by hand; its condition differs from 2-of-3
    let t = parse(&by_b_c);
    let msg = t.signing_messages()[0];
    let one = Fulfillment::Threshold {
        subfulfillments: vec![Details::Ed25519(b.public_bytes()).sign(&msg, &[(b.public_bytes(), b.signing.clone())].into()).unwrap()],
        subconditions: vec![Condition::ed25519(&a.public_bytes()), Condition::ed25519(&c.public_bytes())],
    };
    let mut raw = by_b_c.clone();
    raw["inputs"][0]["fulfillment"] = json!(one.to_uri());
    tx::set_id(&mut raw);
    assert_eq!(class(check(&l, &raw)), "InvalidSignature");
}

#[test]
fn preimage_hash_lock_output_can_be_claimed_with_the_preimage() {
    let mut l = Ledger::new();
    let (a, b) = (Keypair::generate(), Keypair::generate());
    let lock = Condition::preimage(b"open sesame");
    let mut coin = tx::build_create(&[&a], &[(vec![b.public_bytes()], 1)], json!({"hash": "lock"}), Value::Null);
    coin["outputs"][0]["condition"] = json!({"uri": lock.uri()});
    let msg = parse(&{ let mut x = coin.clone(); tx::set_id(&mut x); x }).signing_messages()[0];
    coin["inputs"][0]["fulfillment"] = json!(Details::Ed25519(a.public_bytes()).sign(&msg, &[(a.public_bytes(), a.signing.clone())].into()).unwrap().to_uri());
    tx::set_id(&mut coin);
    assert_eq!(class(check(&l, &coin)), "ok");
    l.commit(&[&coin]);
    let claim = |preimage: &[u8]| {
        let mut t = tx::build_transfer(&[spend_of_lock(&coin, &a)], &[(vec![b.public_bytes()], 1)], coin["id"].as_str().unwrap(), Value::Null, &[&a]);
        t["inputs"][0]["fulfillment"] = json!(Fulfillment::Preimage(preimage.to_vec()).to_uri());
        tx::set_id(&mut t);
        t
    };
    assert_eq!(class(check(&l, &claim(b"open sesame"))), "ok");
    assert_eq!(class(check(&l, &claim(b"open barley"))), "InvalidSignature");
}

/// Spend of a hash-locked output: the builder needs some details to sign with; the
/// fulfillment is replaced by the preimage afterwards.
fn spend_of_lock(tx: &Value, signer: &Keypair) -> Spend {
    Spend {
        fulfills: OutputRef { txid: tx["id"].as_str().unwrap().into(), index: 0 },
        details: Details::Ed25519(signer.public_bytes()),
        owners_before: vec![signer.public_b58.clone()],
    }
}

struct NoBigAmounts;
impl Rule for NoBigAmounts {
    fn name(&self) -> &str {
        "no-big-amounts"
    }
    fn check(&self, tx: &Transaction, _: &dyn LedgerView) -> Result<(), TxError> {
        match tx.outputs.iter().any(|o| o.amount > 100) {
            true => Err(TxError::ValidationError("outputs above 100 are not allowed here".into())),
            false => Ok(()),
        }
    }
}

#[test]
fn plugged_in_rules_apply() {
    let l = Ledger::new();
    let a = Keypair::generate();
    let v = Validator::new().with_rule(Arc::new(NoBigAmounts));
    assert!(v.validate(&parse(&create(&a, 100)), &l.store, &Overlay::default(), false).is_ok());
    let e = v.validate(&parse(&create(&a, 101)), &l.store, &Overlay::default(), false).unwrap_err();
    assert_eq!(e.class(), "ValidationError");
    assert!(e.to_string().starts_with("no-big-amounts:"), "{e}");
}

#[test]
fn in_flight_overlay_blocks_a_second_spend_before_commit() {
    let mut l = Ledger::new();
    let (a, b, c) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let coin = create(&a, 1);
    l.commit(&[&coin]);
    let mut inflight = Overlay::default();
    let v = Validator::new();
    let t1 = parse(&transfer(&coin, 0, &a, &b, 1));
    v.validate(&t1, &l.store, &inflight, false).unwrap();
    inflight.add(&t1);
    let t2 = parse(&transfer(&coin, 0, &a, &c, 1));
    assert_eq!(class(v.validate(&t2, &l.store, &inflight, false)), "DoubleSpend");
    assert_eq!(class(v.validate(&t1, &l.store, &inflight, false)), "DuplicateTransaction");
    // spending an output of an uncommitted transaction says to wait for it
    let e = v.validate(&parse(&transfer(&transfer(&coin, 0, &a, &b, 1), 0, &b, &c, 1)), &l.store, &inflight, false).unwrap_err();
    assert!(e.to_string().contains("not committed yet"), "{e}");
}

#[test]
fn forbidden_key_names_fail_in_blocks_too() {
    // A member could put such a transaction straight into the engine's backlog: the vote must
    // refuse it as ingest does, and leave the other transactions of the block alone.
    let l = Ledger::new();
    let k = Keypair::generate();
    let bad = parse(&tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], json!({"list": [{"$gt": 1}]}), Value::Null));
    let good = parse(&create(&k, 1));
    let r = Validator::new().validate_block(&[bad.clone(), good], &l.store, &Overlay::default());
    assert_eq!(r.iter().cloned().map(class).collect::<Vec<_>>(), ["ValidationError", "ok"]);
    assert!(r[0].as_ref().unwrap_err().to_string().contains(r#"Invalid key name "$gt" in asset object"#), "{r:?}");
    assert_eq!(class(Validator::new().check_stateless(&bad)), "ValidationError");
}

#[test]
fn a_bad_id_is_reported_before_a_bad_key_name() {
    // BigchainDB checks the id first, then key names.
    let k = Keypair::generate();
    let mut v = tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], json!({"a.b": 1}), Value::Null);
    assert_eq!(class(parse(&v).check_intrinsic()), "ValidationError");
    v["id"] = json!("0".repeat(64));
    assert_eq!(class(parse(&v).check_intrinsic()), "InvalidHash");
}
