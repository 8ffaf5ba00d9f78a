//! Crypto-conditions as BigchainDB 2.x uses them (draft-02 encodings of the Python
//! `cryptoconditions` 0.8 package): ed25519-sha-256, threshold-sha-256 (m-of-n, nested) and
//! preimage-sha-256 (hash-lock). No Rust crate implements these; every encoding here is pinned
//! by `vectors/conditions.json`, made by the Python package.
//!
//! Validation does not verify signatures itself: it collects [`SigCheck`]s so the caller can
//! verify a whole block's signatures in one batch (see `crypto::verify_all`).

use crate::der::{self, DerError, Reader};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use thiserror::Error;

/// Type ids of the crypto-conditions draft (only 0, 2 and 4 can be fulfilled here).
pub const PREIMAGE: u8 = 0;
/// prefix-sha-256: recognised in bare subconditions only.
pub const PREFIX: u8 = 1;
/// threshold-sha-256.
pub const THRESHOLD: u8 = 2;
/// rsa-sha-256: recognised in bare subconditions only.
pub const RSA: u8 = 3;
/// ed25519-sha-256.
pub const ED25519: u8 = 4;
/// Cost of every ed25519-sha-256 condition.
pub const ED25519_COST: u64 = 131_072;
/// Deepest nesting accepted (BigchainDB's limit).
pub const MAX_DEPTH: usize = 100;

const NAMES: [&str; 5] = [
    "preimage-sha-256",
    "prefix-sha-256",
    "threshold-sha-256",
    "rsa-sha-256",
    "ed25519-sha-256",
];

/// Why a condition, fulfillment or `details` object was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CcError {
    /// The DER bytes are malformed.
    #[error(transparent)]
    Der(#[from] DerError),
    /// Not base64url.
    #[error("fulfillment is not base64url: {0}")]
    Base64(String),
    /// The condition URI does not parse.
    #[error("bad condition uri: {0}")]
    Uri(String),
    /// The `details` object is not a supported condition description.
    #[error("bad condition details: {0}")]
    Details(String),
    /// A type this implementation cannot fulfill.
    #[error("unsupported crypto-condition type {0}")]
    Unsupported(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("crypto-condition nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Signing found no key for a required signer.
    #[error("no private key for public key {0}")]
    MissingKey(String),
}

/// Name of a condition type id, as used in URIs and `details`.
pub fn type_name(type_id: u8) -> &'static str {
    NAMES.get(type_id as usize).copied().unwrap_or("unknown")
}

/// A condition: what an output is locked with (fixed size, whatever its structure).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    /// Type id (0..=4).
    pub type_id: u8,
    /// SHA-256 of the type's fingerprint contents.
    pub fingerprint: [u8; 32],
    /// Worst-case fulfillment cost.
    pub cost: u64,
    /// Bit i set when type i appears below a compound condition (never its own type).
    pub subtypes: u8,
}

impl Condition {
    fn is_compound(type_id: u8) -> bool {
        type_id == PREFIX || type_id == THRESHOLD
    }

    /// DER encoding: `[type] { [0] fingerprint, [1] cost, [2] subtypes (compound only) }`.
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(48);
        der::write_tlv(&mut body, 0x80, &self.fingerprint);
        der::write_tlv(&mut body, 0x81, &der::uint_content(self.cost));
        if Self::is_compound(self.type_id) {
            der::write_tlv(&mut body, 0x82, &subtypes_bitstring(self.subtypes));
        }
        let mut out = Vec::with_capacity(body.len() + 2);
        der::write_tlv(&mut out, 0xa0 | self.type_id, &body);
        out
    }

    fn from_der(tag: u8, content: &[u8]) -> Result<Self, CcError> {
        let type_id = tag.checked_sub(0xa0).filter(|t| *t <= ED25519).ok_or(DerError("unknown condition type"))?;
        let mut r = Reader::new(content);
        let fingerprint: [u8; 32] = r.read(0x80)?.try_into().map_err(|_| DerError("fingerprint must be 32 bytes"))?;
        let cost = der::parse_uint(r.read(0x81)?)?;
        let subtypes = if Self::is_compound(type_id) { parse_subtypes(r.read(0x82)?)? } else { 0 };
        if !r.is_empty() {
            return Err(DerError("trailing bytes in condition").into());
        }
        Ok(Condition { type_id, fingerprint, cost, subtypes })
    }

    /// Parses one DER-encoded condition (as the node stores them); `None` if malformed.
    pub fn parse_der(bytes: &[u8]) -> Option<Condition> {
        let mut r = Reader::new(bytes);
        let (tag, content) = r.read_any().ok()?;
        r.is_empty().then(|| Condition::from_der(tag, content).ok()).flatten()
    }

    /// `ni:///sha-256;<b64url fingerprint>?fpt=<type>&cost=<n>[&subtypes=a,b]`.
    pub fn uri(&self) -> String {
        let mut uri = format!(
            "ni:///sha-256;{}?fpt={}&cost={}",
            B64.encode(self.fingerprint),
            type_name(self.type_id),
            self.cost
        );
        if Self::is_compound(self.type_id) {
            let names: Vec<&str> = (0..5u8).filter(|i| self.subtypes & (1 << i) != 0).map(type_name).collect();
            let mut names = names;
            names.sort_unstable();
            uri.push_str("&subtypes=");
            uri.push_str(&names.join(","));
        }
        uri
    }

    /// Parses a condition URI (parameters in any order, as BigchainDB's schema allows).
    pub fn parse_uri(uri: &str) -> Result<Self, CcError> {
        let bad = |m: &str| CcError::Uri(format!("{m} in {uri:?}"));
        let rest = uri.strip_prefix("ni:///sha-256;").ok_or_else(|| bad("missing ni:///sha-256; prefix"))?;
        let (fp, query) = rest.split_once('?').ok_or_else(|| bad("missing query"))?;
        let fp = B64.decode(fp).map_err(|_| bad("fingerprint is not base64url"))?;
        let fingerprint: [u8; 32] = fp.try_into().map_err(|_| bad("fingerprint is not 32 bytes"))?;
        let (mut fpt, mut cost, mut subtypes) = (None, None, None);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("fpt", v)) => fpt = Some(v),
                Some(("cost", v)) => cost = Some(v),
                Some(("subtypes", v)) => subtypes = Some(v),
                _ => return Err(bad("unknown parameter")),
            }
        }
        let fpt = fpt.ok_or_else(|| bad("missing fpt"))?;
        let type_id = NAMES.iter().position(|n| *n == fpt).ok_or_else(|| bad("unknown fpt"))? as u8;
        let cost_s = cost.ok_or_else(|| bad("missing cost"))?;
        if cost_s.is_empty() || cost_s.len() > 1 && cost_s.starts_with('0') {
            return Err(bad("bad cost"));
        }
        let cost = cost_s.parse().map_err(|_| bad("bad cost"))?;
        let mut bits = 0u8;
        if Self::is_compound(type_id) {
            for name in subtypes.ok_or_else(|| bad("missing subtypes"))?.split(',').filter(|s| !s.is_empty()) {
                let i = NAMES.iter().position(|n| *n == name).ok_or_else(|| bad("unknown subtype"))?;
                bits |= 1 << i;
            }
        } else if subtypes.is_some() {
            return Err(bad("subtypes on a simple condition"));
        }
        Ok(Condition { type_id, fingerprint, cost, subtypes: bits })
    }

    /// The condition of an ed25519-sha-256 public key.
    pub fn ed25519(public_key: &[u8; 32]) -> Self {
        let mut contents = Vec::with_capacity(36);
        der::write_tlv(&mut contents, 0x80, public_key);
        let mut seq = Vec::with_capacity(36);
        der::write_tlv(&mut seq, 0x30, &contents);
        Condition { type_id: ED25519, fingerprint: Sha256::digest(&seq).into(), cost: ED25519_COST, subtypes: 0 }
    }

    /// The condition of a preimage-sha-256 hash-lock.
    pub fn preimage(preimage: &[u8]) -> Self {
        Condition { type_id: PREIMAGE, fingerprint: Sha256::digest(preimage).into(), cost: preimage.len() as u64, subtypes: 0 }
    }

    /// The condition of a threshold over `subs`, as the draft defines it.
    pub fn threshold(threshold: u64, subs: &[Condition]) -> Result<Self, CcError> {
        if threshold == 0 || threshold as usize > subs.len() {
            return Err(CcError::Details(format!("threshold {threshold} with {} subconditions", subs.len())));
        }
        let mut encoded: Vec<Vec<u8>> = subs.iter().map(Condition::to_der).collect();
        der::sort_set_of(&mut encoded);
        let mut set = Vec::new();
        der::write_tlv(&mut set, 0x80, &der::uint_content(threshold));
        der::write_tlv(&mut set, 0xa1, &encoded.concat());
        let mut seq = Vec::new();
        der::write_tlv(&mut seq, 0x30, &set);
        let mut costs: Vec<u64> = subs.iter().map(|c| c.cost).collect();
        costs.sort_unstable_by(|a, b| b.cmp(a));
        let cost = costs[..threshold as usize].iter().sum::<u64>() + 1024 * subs.len() as u64;
        let subtypes = subs.iter().fold(0u8, |acc, c| acc | c.subtypes | (1 << c.type_id)) & !(1 << THRESHOLD);
        Ok(Condition { type_id: THRESHOLD, fingerprint: Sha256::digest(&seq).into(), cost, subtypes })
    }
}

fn subtypes_bitstring(bits: u8) -> Vec<u8> {
    // Named-bit BIT STRING: bit i is the i-th most significant bit; trailing zeros dropped.
    if bits == 0 {
        return vec![0];
    }
    let highest = 7 - bits.leading_zeros() as u8;
    vec![7 - highest, bits.reverse_bits()]
}

fn parse_subtypes(content: &[u8]) -> Result<u8, DerError> {
    match content {
        [0] => Ok(0),
        [unused, byte] if *unused < 8 && byte & ((1u16 << unused) - 1) as u8 == 0 => Ok(byte.reverse_bits()),
        _ => Err(DerError("bad subtypes bit string")),
    }
}

/// A fulfillment: the data that satisfies a condition (signatures, preimage, structure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfillment {
    /// Reveals the preimage of a SHA-256 hash-lock.
    Preimage(Vec<u8>),
    /// An Ed25519 public key and its signature over the message.
    Ed25519 { public_key: [u8; 32], signature: [u8; 64] },
    /// Exactly `threshold` fulfilled subconditions plus the rest as bare conditions; the
    /// threshold of a parsed fulfillment is the number of fulfilled ones.
    Threshold { subfulfillments: Vec<Fulfillment>, subconditions: Vec<Condition> },
}

/// One Ed25519 signature a fulfillment needs checked (the message is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigCheck {
    /// Raw public key.
    pub public_key: [u8; 32],
    /// Raw signature.
    pub signature: [u8; 64],
}

impl Fulfillment {
    /// Parses the base64url (unpadded) form BigchainDB puts in `inputs[].fulfillment`.
    pub fn from_uri(s: &str) -> Result<Self, CcError> {
        let bytes = B64.decode(s).map_err(|e| CcError::Base64(e.to_string()))?;
        Self::from_der(&bytes)
    }

    /// Parses DER bytes; refuses trailing bytes.
    pub fn from_der(bytes: &[u8]) -> Result<Self, CcError> {
        let mut r = Reader::new(bytes);
        let (tag, content) = r.read_any()?;
        if !r.is_empty() {
            return Err(DerError("trailing bytes after fulfillment").into());
        }
        Self::parse(tag, content, 0)
    }

    fn parse(tag: u8, content: &[u8], depth: usize) -> Result<Self, CcError> {
        if depth > MAX_DEPTH {
            return Err(CcError::TooDeep);
        }
        let mut r = Reader::new(content);
        let f = match tag {
            0xa0 => Fulfillment::Preimage(r.read(0x80)?.to_vec()),
            0xa4 => {
                let public_key = r.read(0x80)?.try_into().map_err(|_| DerError("ed25519 public key must be 32 bytes"))?;
                let signature = r.read(0x81)?.try_into().map_err(|_| DerError("ed25519 signature must be 64 bytes"))?;
                Fulfillment::Ed25519 { public_key, signature }
            }
            0xa2 => {
                let mut subs = Reader::new(r.read(0xa0)?);
                let mut subfulfillments = Vec::new();
                while !subs.is_empty() {
                    let (t, c) = subs.read_any()?;
                    subfulfillments.push(Self::parse(t, c, depth + 1)?);
                }
                let mut conds = Reader::new(r.read(0xa1)?);
                let mut subconditions = Vec::new();
                while !conds.is_empty() {
                    let (t, c) = conds.read_any()?;
                    subconditions.push(Condition::from_der(t, c)?);
                }
                if subfulfillments.is_empty() {
                    return Err(CcError::Details("threshold fulfillment with no subfulfillments".into()));
                }
                Fulfillment::Threshold { subfulfillments, subconditions }
            }
            0xa1 | 0xa3 => return Err(CcError::Unsupported(type_name(tag - 0xa0).into())),
            _ => return Err(DerError("unknown fulfillment type").into()),
        };
        if !r.is_empty() {
            return Err(DerError("trailing bytes in fulfillment").into());
        }
        Ok(f)
    }

    /// DER encoding (threshold SET OFs sorted as DER requires).
    pub fn to_der(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(110);
        match self {
            Fulfillment::Preimage(p) => {
                let mut body = Vec::new();
                der::write_tlv(&mut body, 0x80, p);
                der::write_tlv(&mut out, 0xa0, &body);
            }
            Fulfillment::Ed25519 { public_key, signature } => {
                let mut body = Vec::with_capacity(100);
                der::write_tlv(&mut body, 0x80, public_key);
                der::write_tlv(&mut body, 0x81, signature);
                der::write_tlv(&mut out, 0xa4, &body);
            }
            Fulfillment::Threshold { subfulfillments, subconditions } => {
                let mut f: Vec<Vec<u8>> = subfulfillments.iter().map(Fulfillment::to_der).collect();
                let mut c: Vec<Vec<u8>> = subconditions.iter().map(Condition::to_der).collect();
                der::sort_set_of(&mut f);
                der::sort_set_of(&mut c);
                let mut body = Vec::new();
                der::write_tlv(&mut body, 0xa0, &f.concat());
                der::write_tlv(&mut body, 0xa1, &c.concat());
                der::write_tlv(&mut out, 0xa2, &body);
            }
        }
        out
    }

    /// Base64url without padding, as in `inputs[].fulfillment`.
    pub fn to_uri(&self) -> String {
        B64.encode(self.to_der())
    }

    /// The condition this fulfillment satisfies.
    pub fn condition(&self) -> Condition {
        match self {
            Fulfillment::Preimage(p) => Condition::preimage(p),
            Fulfillment::Ed25519 { public_key, .. } => Condition::ed25519(public_key),
            Fulfillment::Threshold { subfulfillments, subconditions } => {
                let all: Vec<Condition> =
                    subfulfillments.iter().map(Fulfillment::condition).chain(subconditions.iter().cloned()).collect();
                Condition::threshold(subfulfillments.len() as u64, &all).expect("threshold never exceeds its subconditions")
            }
        }
    }

    /// Collects the Ed25519 signatures this fulfillment needs verified; everything else about
    /// it (structure, hash-locks) is already checked by parsing and `condition()`.
    pub fn collect_signatures(&self, out: &mut Vec<SigCheck>) {
        match self {
            Fulfillment::Preimage(_) => {}
            Fulfillment::Ed25519 { public_key, signature } => {
                out.push(SigCheck { public_key: *public_key, signature: *signature })
            }
            Fulfillment::Threshold { subfulfillments, .. } => {
                subfulfillments.iter().for_each(|f| f.collect_signatures(out))
            }
        }
    }
}

/// The `details` of an output's condition, as BigchainDB writes them: the structure behind a
/// condition, from which the condition is rebuilt (the `uri` string is never trusted alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    /// `{"type": "ed25519-sha-256", "public_key": <base58>}`
    Ed25519([u8; 32]),
    /// `{"type": "threshold-sha-256", "threshold": n, "subconditions": [...]}`
    Threshold { threshold: u64, subconditions: Vec<Details> },
}

impl Details {
    /// Parses a `details` JSON object.
    pub fn from_json(v: &Value) -> Result<Self, CcError> {
        Self::parse(v, 0)
    }

    fn parse(v: &Value, depth: usize) -> Result<Self, CcError> {
        if depth > MAX_DEPTH {
            return Err(CcError::TooDeep);
        }
        let bad = |m: &str| CcError::Details(m.to_string());
        let obj = v.as_object().ok_or_else(|| bad("details must be an object"))?;
        match obj.get("type").and_then(Value::as_str) {
            Some("ed25519-sha-256") => {
                let pk = obj.get("public_key").and_then(Value::as_str).ok_or_else(|| bad("missing public_key"))?;
                Ok(Details::Ed25519(crate::crypto::decode_public_key(pk).map_err(|e| CcError::Details(e.to_string()))?))
            }
            Some("threshold-sha-256") => {
                let threshold = obj.get("threshold").and_then(Value::as_u64).ok_or_else(|| bad("missing threshold"))?;
                let subs = obj.get("subconditions").and_then(Value::as_array).ok_or_else(|| bad("missing subconditions"))?;
                if threshold == 0 || threshold as usize > subs.len() {
                    return Err(bad("threshold must be between 1 and the number of subconditions"));
                }
                let subconditions = subs.iter().map(|s| Self::parse(s, depth + 1)).collect::<Result<_, _>>()?;
                Ok(Details::Threshold { threshold, subconditions })
            }
            Some(other) => Err(CcError::Unsupported(other.to_string())),
            None => Err(bad("missing type")),
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Details::Ed25519(pk) => json!({"type": "ed25519-sha-256", "public_key": bs58::encode(pk).into_string()}),
            Details::Threshold { threshold, subconditions } => json!({
                "type": "threshold-sha-256",
                "threshold": threshold,
                "subconditions": subconditions.iter().map(Details::to_json).collect::<Vec<_>>(),
            }),
        }
    }

    /// The condition these details describe.
    pub fn condition(&self) -> Condition {
        match self {
            Details::Ed25519(pk) => Condition::ed25519(pk),
            Details::Threshold { threshold, subconditions } => {
                let subs: Vec<Condition> = subconditions.iter().map(Details::condition).collect();
                Condition::threshold(*threshold, &subs).expect("checked when parsed")
            }
        }
    }

    /// Signs `message` with every key available in `keys` (by raw public key) and builds the
    /// fulfillment, keeping the first `threshold` signed branches as the Python package does.
    pub fn sign(&self, message: &[u8], keys: &HashMap<[u8; 32], SigningKey>) -> Result<Fulfillment, CcError> {
        match self {
            Details::Ed25519(pk) => {
                let key = keys.get(pk).ok_or_else(|| CcError::MissingKey(bs58::encode(pk).into_string()))?;
                Ok(Fulfillment::Ed25519 { public_key: *pk, signature: key.sign(message).to_bytes() })
            }
            Details::Threshold { threshold, subconditions } => {
                let mut fulfilled = Vec::new();
                let mut conditions = Vec::new();
                let mut last_err = None;
                for sub in subconditions {
                    match sub.sign(message, keys) {
                        Ok(f) if fulfilled.len() < *threshold as usize => fulfilled.push(f),
                        Ok(f) => conditions.push(f.condition()),
                        Err(e) => {
                            conditions.push(sub.condition());
                            last_err = Some(e);
                        }
                    }
                }
                if (fulfilled.len() as u64) < *threshold {
                    return Err(last_err.unwrap_or(CcError::Details("threshold not met".into())));
                }
                Ok(Fulfillment::Threshold { subfulfillments: fulfilled, subconditions: conditions })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtypes_bits_round_trip() {
        for bits in [0u8, 1, 0b10000, 0b10001, 0b11111] {
            assert_eq!(parse_subtypes(&subtypes_bitstring(bits)).unwrap(), bits, "bits {bits:#b}");
        }
        assert_eq!(subtypes_bitstring(1 << ED25519), vec![3, 0x08]);
    }

    #[test]
    fn uri_rejects_garbage() {
        for bad in ["", "ni:///sha-256;", "ni:///sha-256;AAAA?fpt=ed25519-sha-256&cost=1", "http://x"] {
            assert!(Condition::parse_uri(bad).is_err(), "{bad}");
        }
    }
}
