//! BigchainDB 2.0 transactions: strict schema parsing, id and signing messages, and a builder
//! that signs exactly as the official driver does (pinned by `vectors/transactions.json`).
//!
//! - id = SHA3-256(canonical(tx with `"id": null`)), signatures included;
//! - input i signs SHA3-256(canonical(tx with id and every fulfillment null) ‖ fulfills),
//!   where fulfills is `"{txid}{output_index}"` for a TRANSFER input and empty for CREATE.

use crate::canonical;
use crate::cc::{Condition, Details, Fulfillment, SigCheck};
use crate::crypto::{self, Keypair};
use ed25519_dalek::SigningKey;
use serde_json::{json, Map, Value};
use sha3::{Digest, Sha3_256};
use std::collections::HashMap;
use thiserror::Error;

/// Largest amount an output may hold (BigchainDB's limit).
pub const MAX_AMOUNT: u64 = 9_000_000_000_000_000_000;

/// What kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Issues a new asset; its id is the asset id.
    Create,
    /// Moves outputs of earlier transactions of one asset.
    Transfer,
}

impl Operation {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Transfer => "TRANSFER",
        }
    }
}

/// A pointer to one output of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputRef {
    /// Transaction id (64 lower-case hex).
    pub txid: String,
    /// Index into that transaction's outputs.
    pub index: u32,
}

/// One input: who owned it, what it spends, and the fulfillment proving the right to.
#[derive(Debug, Clone)]
pub struct Input {
    /// base58 public keys of the previous owners (not cross-checked, as in BigchainDB).
    pub owners_before: Vec<String>,
    /// The spent output; `None` for CREATE.
    pub fulfills: Option<OutputRef>,
    /// The parsed fulfillment.
    pub fulfillment: Fulfillment,
}

/// One output: an amount locked by a condition.
#[derive(Debug, Clone)]
pub struct Output {
    /// base58 public keys named as owners.
    pub public_keys: Vec<String>,
    /// Parsed amount (1..=9e18).
    pub amount: u64,
    /// The condition, rebuilt from `details` (or from `uri` for a hash-lock).
    pub condition: Condition,
}

/// A parsed, schema-checked transaction. `raw` is the JSON it was parsed from.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The claimed id (checked by [`Transaction::check_id`]).
    pub id: String,
    /// CREATE or TRANSFER.
    pub operation: Operation,
    /// Inputs in order.
    pub inputs: Vec<Input>,
    /// Outputs in order.
    pub outputs: Vec<Output>,
    /// The asset id: own id for CREATE, `asset.id` for TRANSFER.
    pub asset_id: String,
    /// The full JSON.
    pub raw: Value,
    /// The texts it hashes to and is stored as, made once on first use (see [`Forms`]).
    forms: std::sync::OnceLock<Forms>,
}

/// What a transaction's id check, signature checks and storage need, from one canonical
/// serialization of `raw` (the three texts differ only in the id and fulfillment values, so
/// they are spliced from it): serializing was done three times per transaction before, about
/// a fifth of a node's CPU per transaction (docs/performance.md).
#[derive(Debug, Clone)]
struct Forms {
    /// SHA3-256 hex of the canonical text with `"id": null`: what `id` must equal.
    computed_id: String,
    /// The 32-byte message each input signs, in input order.
    messages: Vec<[u8; 32]>,
    /// The canonical text of the whole transaction.
    canonical: String,
}

/// Why a transaction is invalid; the variant names are BigchainDB's exception classes, which
/// clients (and the driver) see in error bodies.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TxError {
    /// The JSON does not follow the transaction schema.
    #[error("{0}")]
    Schema(String),
    /// The id is not the hash of the body.
    #[error("{0}")]
    InvalidHash(String),
    /// A fulfillment does not parse, does not match its output, or a signature is wrong.
    #[error("{0}")]
    InvalidSignature(String),
    /// An output is spent already, or twice in one block.
    #[error("{0}")]
    DoubleSpend(String),
    /// A spent transaction or output does not exist (yet).
    #[error("{0}")]
    InputDoesNotExist(String),
    /// Inputs and outputs do not balance.
    #[error("{0}")]
    AmountError(String),
    /// Inputs belong to another asset.
    #[error("{0}")]
    AssetIdMismatch(String),
    /// The transaction is committed or queued already.
    #[error("{0}")]
    DuplicateTransaction(String),
    /// Any other rule (plugins use this).
    #[error("{0}")]
    ValidationError(String),
}

impl TxError {
    /// BigchainDB's class name for the error body.
    pub fn class(&self) -> &'static str {
        match self {
            TxError::Schema(_) => "SchemaValidationError",
            TxError::InvalidHash(_) => "InvalidHash",
            TxError::InvalidSignature(_) => "InvalidSignature",
            TxError::DoubleSpend(_) => "DoubleSpend",
            TxError::InputDoesNotExist(_) => "InputDoesNotExist",
            TxError::AmountError(_) => "AmountError",
            TxError::AssetIdMismatch(_) => "AssetIdMismatch",
            TxError::DuplicateTransaction(_) => "DuplicateTransaction",
            TxError::ValidationError(_) => "ValidationError",
        }
    }

    /// The message BigchainDB's HTTP API returns for this error.
    pub fn http_message(&self) -> String {
        match self {
            TxError::Schema(m) => format!("Invalid transaction schema: {m}"),
            other => format!("Invalid transaction ({}): {other}", other.class()),
        }
    }
}

fn schema(msg: impl Into<String>) -> TxError {
    TxError::Schema(msg.into())
}

/// True for 64 hex characters (BigchainDB's `sha3_hexdigest` pattern; lower case required).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for BigchainDB's public key pattern (base58, 43–44 characters).
pub fn is_public_key(s: &str) -> bool {
    crypto::PUBLIC_KEY_B58_CHARS.contains(&s.len()) && crypto::decode_public_key(s).is_ok()
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), TxError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(schema(format!("Additional properties are not allowed ('{k}' was unexpected) in {what}")));
        }
    }
    for k in allowed {
        if !obj.contains_key(*k) {
            return Err(schema(format!("'{k}' is a required property of {what}")));
        }
    }
    Ok(())
}

fn key_list(v: &Value, what: &str) -> Result<Vec<String>, TxError> {
    let arr = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| schema(format!("{what} must be a non-empty array")))?;
    arr.iter()
        .map(|k| match k.as_str() {
            Some(s) if is_public_key(s) => Ok(s.to_string()),
            _ => Err(schema(format!("{what} holds {k} which is not a base58 public key"))),
        })
        .collect()
}

impl Transaction {
    /// Parses JSON bytes and checks the schema.
    pub fn parse(bytes: &[u8]) -> Result<Self, TxError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| schema(format!("body is not valid JSON: {e}")))?;
        Self::from_value(raw)
    }

    /// Checks the schema of an already-parsed JSON value.
    pub fn from_value(raw: Value) -> Result<Self, TxError> {
        let obj = raw.as_object().ok_or_else(|| schema("a transaction must be a JSON object"))?;
        only_keys(obj, &["asset", "id", "inputs", "metadata", "operation", "outputs", "version"], "the transaction")?;
        let id = match &obj["id"] {
            Value::String(s) if is_hex64(s) => s.clone(),
            other => return Err(schema(format!("id {other} is not 64 lower-case hex characters"))),
        };
        if obj["version"] != "2.0" {
            return Err(schema(format!("version {} is not supported: only \"2.0\" transactions are accepted", obj["version"])));
        }
        let operation = match obj["operation"].as_str() {
            Some("CREATE") => Operation::Create,
            Some("TRANSFER") => Operation::Transfer,
            _ => return Err(schema(format!("operation {} must be \"CREATE\" or \"TRANSFER\"", obj["operation"]))),
        };
        match &obj["metadata"] {
            Value::Null => {}
            Value::Object(m) if !m.is_empty() => {}
            other => return Err(schema(format!("metadata must be a non-empty object or null, got {other}"))),
        }
        let asset = obj["asset"].as_object().ok_or_else(|| schema("asset must be an object"))?;
        let asset_id = match operation {
            Operation::Create => {
                only_keys(asset, &["data"], "a CREATE asset")?;
                if !(asset["data"].is_object() || asset["data"].is_null()) {
                    return Err(schema("asset.data must be an object or null"));
                }
                id.clone()
            }
            Operation::Transfer => {
                only_keys(asset, &["id"], "a TRANSFER asset")?;
                match asset["id"].as_str() {
                    Some(s) if is_hex64(s) => s.to_string(),
                    _ => return Err(schema("asset.id must be 64 lower-case hex characters")),
                }
            }
        };
        let inputs_json = obj["inputs"].as_array().filter(|a| !a.is_empty()).ok_or_else(|| schema("inputs must be a non-empty array"))?;
        if operation == Operation::Create && inputs_json.len() != 1 {
            return Err(schema("a CREATE transaction must have exactly one input"));
        }
        let mut inputs = Vec::with_capacity(inputs_json.len());
        for (i, input) in inputs_json.iter().enumerate() {
            let what = format!("inputs[{i}]");
            let o = input.as_object().ok_or_else(|| schema(format!("{what} must be an object")))?;
            only_keys(o, &["fulfillment", "fulfills", "owners_before"], &what)?;
            let owners_before = key_list(&o["owners_before"], &format!("{what}.owners_before"))?;
            let fulfills = match (&o["fulfills"], operation) {
                (Value::Null, Operation::Create) => None,
                (Value::Object(f), Operation::Transfer) => {
                    only_keys(f, &["output_index", "transaction_id"], &format!("{what}.fulfills"))?;
                    let txid = f["transaction_id"].as_str().filter(|s| is_hex64(s));
                    let index = f["output_index"].as_u64().filter(|i| *i <= u32::MAX as u64);
                    match (txid, index) {
                        (Some(t), Some(ix)) => Some(OutputRef { txid: t.to_string(), index: ix as u32 }),
                        _ => return Err(schema(format!("{what}.fulfills needs a hex64 transaction_id and an output_index >= 0"))),
                    }
                }
                (_, Operation::Create) => return Err(schema(format!("{what}.fulfills must be null in a CREATE"))),
                (_, Operation::Transfer) => return Err(schema(format!("{what}.fulfills must be an object in a TRANSFER"))),
            };
            let f = o["fulfillment"].as_str().ok_or_else(|| {
                schema(format!("{what}.fulfillment must be a signed fulfillment string (the transaction is not signed)"))
            })?;
            let fulfillment = Fulfillment::from_uri(f).map_err(|e| TxError::InvalidSignature(format!("{what}.fulfillment: {e}")))?;
            inputs.push(Input { owners_before, fulfills, fulfillment });
        }
        let outputs_json = obj["outputs"].as_array().filter(|a| !a.is_empty()).ok_or_else(|| schema("outputs must be a non-empty array"))?;
        let mut outputs = Vec::with_capacity(outputs_json.len());
        for (i, output) in outputs_json.iter().enumerate() {
            outputs.push(parse_output(output, &format!("outputs[{i}]"))?);
        }
        Ok(Transaction { id, operation, inputs, outputs, asset_id, raw, forms: std::sync::OnceLock::new() })
    }

    /// Checks that `id` is the hash of the body.
    pub fn check_id(&self) -> Result<(), TxError> {
        if self.forms().computed_id == self.id {
            Ok(())
        } else {
            Err(TxError::InvalidHash(format!(
                "The transaction's id '{}' isn't equal to the hash of its body, i.e. it's not valid.",
                self.id
            )))
        }
    }

    /// The id and the key-name rule, in BigchainDB's order: every check on the body alone
    /// except signatures (which are batched separately). Ingest and block validation call it.
    pub fn check_intrinsic(&self) -> Result<(), TxError> {
        self.check_id()?;
        self.check_key_names()
    }

    /// BigchainDB 2.x refuses a key in `asset.data` or `metadata` that starts with `$` or
    /// contains `.` or a null character, at any depth (objects inside arrays too), so a Cairn
    /// ledger must not hold one either. Values are not restricted.
    pub fn check_key_names(&self) -> Result<(), TxError> {
        check_keys_in(self.asset_data(), "asset")?;
        check_keys_in(self.metadata(), "metadata")
    }

    /// The 32-byte message each input signs, in input order.
    pub fn signing_messages(&self) -> Vec<[u8; 32]> {
        self.forms().messages.clone()
    }

    /// Every signature this transaction needs verified, with the index of its message.
    pub fn signature_checks(&self) -> Vec<(SigCheck, usize)> {
        let mut out = Vec::with_capacity(self.inputs.len());
        let mut buf = Vec::with_capacity(2);
        for (i, input) in self.inputs.iter().enumerate() {
            buf.clear();
            input.fulfillment.collect_signatures(&mut buf);
            out.extend(buf.iter().map(|c| (*c, i)));
        }
        out
    }

    /// Canonical JSON text of the whole transaction (what is stored and hashed).
    pub fn canonical(&self) -> String {
        self.forms().canonical.clone()
    }

    fn forms(&self) -> &Forms {
        self.forms.get_or_init(|| {
            let (mut canonical, mut id, mut fulfillments) = (String::with_capacity(1024), None, Vec::new());
            write_marked(&mut canonical, &self.raw, &mut id, &mut fulfillments);
            let mut spans: Vec<std::ops::Range<usize>> = id.into_iter().collect();
            let id_null = null_spans(&canonical, &spans);
            spans.extend(fulfillments);
            let signing = null_spans(&canonical, &spans);
            Forms {
                computed_id: crypto::sha3_hex(id_null.as_bytes()),
                messages: messages_from(&signing, self.inputs.iter().map(|i| i.fulfills.as_ref())),
                canonical,
            }
        })
    }

    /// `asset.data` of a CREATE (null otherwise or when absent).
    pub fn asset_data(&self) -> &Value {
        self.raw.get("asset").and_then(|a| a.get("data")).unwrap_or(&Value::Null)
    }

    /// `metadata` (may be null).
    pub fn metadata(&self) -> &Value {
        self.raw.get("metadata").unwrap_or(&Value::Null)
    }
}

/// Walks every object key below `v`; `what` names the object in the error as BigchainDB does.
fn check_keys_in(v: &Value, what: &str) -> Result<(), TxError> {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                if k.starts_with('$') || k.contains('.') || k.contains('\0') {
                    return Err(TxError::ValidationError(format!(
                        "Invalid key name \"{k}\" in {what} object. The key name cannot contain characters \".\", \"$\" or null characters"
                    )));
                }
                check_keys_in(inner, what)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| check_keys_in(i, what)),
        _ => Ok(()),
    }
}

fn parse_output(v: &Value, what: &str) -> Result<Output, TxError> {
    let o = v.as_object().ok_or_else(|| schema(format!("{what} must be an object")))?;
    only_keys(o, &["amount", "condition", "public_keys"], what)?;
    let public_keys = key_list(&o["public_keys"], &format!("{what}.public_keys"))?;
    let amount = match o["amount"].as_str() {
        Some(s) if (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<u64>().ok(),
        _ => None,
    }
    .filter(|a| (1..=MAX_AMOUNT).contains(a))
    .ok_or_else(|| {
        TxError::AmountError(format!("{what}.amount {} must be a string holding an integer from 1 to {MAX_AMOUNT}", o["amount"]))
    })?;
    let cond = o["condition"].as_object().ok_or_else(|| schema(format!("{what}.condition must be an object")))?;
    let uri = cond.get("uri").and_then(Value::as_str).ok_or_else(|| schema(format!("{what}.condition.uri must be a string")))?;
    let from_uri = Condition::parse_uri(uri).map_err(|e| schema(format!("{what}.condition: {e}")))?;
    let condition = match cond.get("details") {
        Some(d) if !d.is_null() => {
            for k in cond.keys() {
                if k != "details" && k != "uri" {
                    return Err(schema(format!("Additional properties are not allowed ('{k}' was unexpected) in {what}.condition")));
                }
            }
            let details = Details::from_json(d).map_err(|e| schema(format!("{what}.condition: {e}")))?;
            let c = details.condition();
            if c != from_uri {
                return Err(schema(format!("{what}.condition.uri does not match its details (expected {})", c.uri())));
            }
            c
        }
        // A hash-lock output carries only its URI: there is no structure to describe.
        _ if from_uri.type_id == crate::cc::PREIMAGE => from_uri,
        _ => return Err(schema(format!("{what}.condition.details is required (only preimage-sha-256 hash-locks may omit it)"))),
    };
    Ok(Output { public_keys, amount, condition })
}

/// Writes the canonical text of a transaction with `"id": null`, and with every
/// `inputs[].fulfillment` null when `null_fulfillments` (the signing form).
pub fn write_tx(out: &mut String, raw: &Value, null_fulfillments: bool) {
    let (mut text, mut id, mut fulfillments) = (String::with_capacity(1024), None, Vec::new());
    write_marked(&mut text, raw, &mut id, &mut fulfillments);
    let mut spans: Vec<std::ops::Range<usize>> = id.into_iter().collect();
    if null_fulfillments {
        spans.extend(fulfillments);
    }
    out.push_str(&null_spans(&text, &spans));
}

/// Writes the canonical text of a transaction and records where the values go that the id
/// and signing forms null: the id's value (when `raw` has an `id`) and each input's
/// fulfillment value, in order (the id comes first in the text: keys are sorted).
fn write_marked(out: &mut String, raw: &Value, id: &mut Option<std::ops::Range<usize>>, fulfillments: &mut Vec<std::ops::Range<usize>>) {
    let Value::Object(map) = raw else { return canonical::write_value(out, raw) };
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        canonical::write_str(out, k);
        out.push(':');
        let start = out.len();
        match (k.as_str(), v) {
            ("inputs", Value::Array(inputs)) => {
                out.push('[');
                for (j, input) in inputs.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    match input {
                        Value::Object(fields) => {
                            out.push('{');
                            for (n, (fk, fv)) in fields.iter().enumerate() {
                                if n > 0 {
                                    out.push(',');
                                }
                                canonical::write_str(out, fk);
                                out.push(':');
                                let at = out.len();
                                canonical::write_value(out, fv);
                                if fk == "fulfillment" {
                                    fulfillments.push(at..out.len());
                                }
                            }
                            out.push('}');
                        }
                        other => canonical::write_value(out, other),
                    }
                }
                out.push(']');
            }
            _ => canonical::write_value(out, v),
        }
        if k == "id" {
            *id = Some(start..out.len());
        }
    }
    out.push('}');
}

/// `text` with each of the (ordered, disjoint) `spans` replaced by `null`.
fn null_spans(text: &str, spans: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        out.push_str(&text[at..r.start]);
        out.push_str("null");
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

fn signing_messages<'a>(raw: &Value, fulfills: impl Iterator<Item = Option<&'a OutputRef>>) -> Vec<[u8; 32]> {
    let mut s = String::with_capacity(1024);
    write_tx(&mut s, raw, true);
    messages_from(&s, fulfills)
}

/// Each input's message: SHA3-256 of the signing text followed by what the input fulfills.
fn messages_from<'a>(signing_text: &str, fulfills: impl Iterator<Item = Option<&'a OutputRef>>) -> Vec<[u8; 32]> {
    let mut base = Sha3_256::new();
    base.update(signing_text.as_bytes());
    fulfills
        .map(|f| {
            let mut h = base.clone();
            if let Some(r) = f {
                h.update(r.txid.as_bytes());
                h.update(r.index.to_string().as_bytes());
            }
            h.finalize().into()
        })
        .collect()
}

/// Owners of a new output: one key gives an ed25519 condition, several an n-of-n threshold
/// (as the driver's `Output.generate`).
pub fn details_for(owners: &[[u8; 32]]) -> Details {
    match owners {
        [one] => Details::Ed25519(*one),
        many => Details::Threshold { threshold: many.len() as u64, subconditions: many.iter().map(|k| Details::Ed25519(*k)).collect() },
    }
}

fn output_json(owners: &[[u8; 32]], amount: u64) -> Value {
    let details = details_for(owners);
    json!({
        "public_keys": owners.iter().map(|k| bs58::encode(k).into_string()).collect::<Vec<_>>(),
        "amount": amount.to_string(),
        "condition": {"details": details.to_json(), "uri": details.condition().uri()},
    })
}

/// An output being spent by a transaction under construction.
#[derive(Debug, Clone)]
pub struct Spend {
    /// The output.
    pub fulfills: OutputRef,
    /// Its condition details (from the output's JSON).
    pub details: Details,
    /// base58 owners listed in the output (copied to `owners_before`).
    pub owners_before: Vec<String>,
}

/// Builds and signs a CREATE: `signers` own the input, `recipients` are (owners, amount).
pub fn build_create(signers: &[&Keypair], recipients: &[(Vec<[u8; 32]>, u64)], asset_data: Value, metadata: Value) -> Value {
    let signer_keys: Vec<[u8; 32]> = signers.iter().map(|k| k.public_bytes()).collect();
    let input = (details_for(&signer_keys), signers.iter().map(|k| k.public_b58.clone()).collect::<Vec<_>>(), None);
    build(Operation::Create, vec![input], recipients, json!({"data": asset_data}), metadata, signers)
}

/// Builds and signs a TRANSFER of `asset_id` spending `spends`.
pub fn build_transfer(spends: &[Spend], recipients: &[(Vec<[u8; 32]>, u64)], asset_id: &str, metadata: Value, keys: &[&Keypair]) -> Value {
    let inputs = spends.iter().map(|s| (s.details.clone(), s.owners_before.clone(), Some(s.fulfills.clone()))).collect();
    build(Operation::Transfer, inputs, recipients, json!({"id": asset_id}), metadata, keys)
}

type UnsignedInput = (Details, Vec<String>, Option<OutputRef>);

fn build(op: Operation, inputs: Vec<UnsignedInput>, recipients: &[(Vec<[u8; 32]>, u64)], asset: Value, metadata: Value, keys: &[&Keypair]) -> Value {
    let inputs_json: Vec<Value> = inputs
        .iter()
        .map(|(_, owners, f)| {
            json!({
                "owners_before": owners,
                "fulfills": f.as_ref().map(|r| json!({"transaction_id": r.txid, "output_index": r.index})),
                "fulfillment": null,
            })
        })
        .collect();
    let mut tx = json!({
        "asset": asset,
        "id": null,
        "inputs": inputs_json,
        "metadata": metadata,
        "operation": op.as_str(),
        "outputs": recipients.iter().map(|(o, a)| output_json(o, *a)).collect::<Vec<_>>(),
        "version": "2.0",
    });
    let key_map: HashMap<[u8; 32], SigningKey> = keys.iter().map(|k| (k.public_bytes(), k.signing.clone())).collect();
    let messages = signing_messages(&tx, inputs.iter().map(|(_, _, f)| f.as_ref()));
    for (i, ((details, _, _), msg)) in inputs.iter().zip(messages).enumerate() {
        let f = details.sign(&msg, &key_map).expect("build_* callers pass every key the inputs need");
        tx["inputs"][i]["fulfillment"] = Value::String(f.to_uri());
    }
    set_id(&mut tx);
    tx
}

/// Sets `id` to the hash of the transaction (for callers that edit a signed body, such as
/// tests building hash-lock spends by hand).
pub fn set_id(tx: &mut Value) {
    let mut s = String::with_capacity(1024);
    write_tx(&mut s, tx, false);
    tx["id"] = Value::String(crypto::sha3_hex(s.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts spliced from one serialization equal the ones written separately.
    #[test]
    fn forms_from_one_serialization_equal_the_separate_texts() {
        let a = Keypair::from_seed([1; 32]);
        let b = Keypair::from_seed([2; 32]);
        let create = build_create(&[&a], &[(vec![a.public_bytes()], 3), (vec![a.public_bytes(), b.public_bytes()], 2)], json!({"k": "v\u{1}é", "n": [1, 2.5]}), json!({"m": null}));
        let c = Transaction::from_value(create.clone()).unwrap();
        let spends: Vec<Spend> = (0..2u32)
            .map(|i| {
                let o = &create["outputs"][i as usize];
                Spend {
                    fulfills: OutputRef { txid: c.id.clone(), index: i },
                    details: Details::from_json(&o["condition"]["details"]).unwrap(),
                    owners_before: o["public_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect(),
                }
            })
            .collect();
        let transfer = build_transfer(&spends, &[(vec![b.public_bytes()], 5)], &c.id, Value::Null, &[&a, &b]);
        for raw in [create, transfer] {
            let tx = Transaction::from_value(raw.clone()).unwrap();
            // Independent of the splicing: the forms written from modified copies.
            let mut id_null = raw.clone();
            id_null["id"] = Value::Null;
            assert_eq!(tx.forms().computed_id, crypto::sha3_hex(canonical::to_string(&id_null).as_bytes()));
            tx.check_id().unwrap();
            let mut signing = id_null.clone();
            signing["inputs"].as_array_mut().unwrap().iter_mut().for_each(|i| i["fulfillment"] = Value::Null);
            assert_eq!(tx.signing_messages(), messages_from(&canonical::to_string(&signing), tx.inputs.iter().map(|i| i.fulfills.as_ref())));
            assert_eq!(tx.canonical(), canonical::to_string(&raw));
        }
    }
}
