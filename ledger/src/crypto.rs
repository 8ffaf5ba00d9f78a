//! Keys, hashes and signature verification. Keys are base58 as in BigchainDB (public: 32
//! bytes; private: the 32-byte seed). Verification follows `verify_strict` (what libsodium,
//! and so BigchainDB, accepts); batches are only a fast path, re-checked one by one on failure.

use crate::cc::SigCheck;
use curve25519_dalek::edwards::CompressedEdwardsY;
use dashmap::DashMap;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Sha3_256};
use std::sync::LazyLock;
use thiserror::Error;

/// A key that is not a valid base58 Ed25519 key.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid key {0:?}: expected base58 of 32 bytes")]
pub struct KeyError(pub String);

/// SHA3-256 as lower-case hex: how BigchainDB names transactions and blocks.
pub fn sha3_hex(data: &[u8]) -> String {
    hex::encode(Sha3_256::digest(data))
}

/// Decodes a base58 public key (no curve check; see [`verifying_key`]).
pub fn decode_public_key(s: &str) -> Result<[u8; 32], KeyError> {
    let mut out = [0u8; 32];
    match bs58::decode(s).onto(&mut out) {
        Ok(32) => Ok(out),
        _ => Err(KeyError(s.to_string())),
    }
}

/// An Ed25519 keypair in BigchainDB's base58 encoding.
#[derive(Clone)]
pub struct Keypair {
    /// The signing key.
    pub signing: SigningKey,
    /// base58 of the public key.
    pub public_b58: String,
}

impl Keypair {
    /// A fresh random keypair.
    pub fn generate() -> Self {
        Self::from_signing(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A keypair from a 32-byte seed: reproducible workloads (`loadgen --seed`) derive their
    /// keys this way. Never use a guessable seed for keys that hold anything.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_signing(SigningKey::from_bytes(&seed))
    }

    /// Builds a keypair from a base58 private key (32-byte seed).
    pub fn from_private_b58(s: &str) -> Result<Self, KeyError> {
        let seed = decode_public_key(s).map_err(|_| KeyError("<private key hidden>".into()))?;
        Ok(Self::from_signing(SigningKey::from_bytes(&seed)))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let public_b58 = bs58::encode(signing.verifying_key().as_bytes()).into_string();
        Keypair { signing, public_b58 }
    }

    /// base58 of the private seed. Handle with care: never log it.
    pub fn private_b58(&self) -> String {
        bs58::encode(self.signing.to_bytes()).into_string()
    }

    /// Raw public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public_b58)
    }
}

/// Decompressed keys by raw bytes: decompression costs about as much as a third of a verify.
/// Bounded: cleared when it grows past `KEY_CACHE_MAX` (one key per tx under some loads).
static KEY_CACHE: LazyLock<DashMap<[u8; 32], VerifyingKey>> = LazyLock::new(DashMap::new);
const KEY_CACHE_MAX: usize = 200_000;

/// The verifying key for `pk`, refusing weak (small-order) keys as `verify_strict` does.
pub fn verifying_key(pk: &[u8; 32]) -> Option<VerifyingKey> {
    if let Some(k) = KEY_CACHE.get(pk) {
        return Some(*k);
    }
    let key = VerifyingKey::from_bytes(pk).ok().filter(|k| !k.is_weak())?;
    if KEY_CACHE.len() >= KEY_CACHE_MAX {
        KEY_CACHE.clear();
    }
    KEY_CACHE.insert(*pk, key);
    Some(key)
}

/// Verifies one signature with the strict rules.
pub fn verify_one(check: &SigCheck, message: &[u8]) -> bool {
    let Some(key) = verifying_key(&check.public_key) else { return false };
    key.verify_strict(message, &Signature::from_bytes(&check.signature)).is_ok()
}

/// True when the signature's R is not of small order (a `verify_strict` rule that the batch
/// equation does not apply by itself, so it is checked before batching).
fn r_is_acceptable(sig: &[u8; 64]) -> bool {
    let r: [u8; 32] = sig[..32].try_into().expect("64-byte signature");
    CompressedEdwardsY(r).decompress().is_some_and(|p| !p.is_small_order())
}

/// Verifies every `(check, message index)` pair against `messages`; returns one verdict per
/// check. Uses batch verification when there are enough signatures, falling back to strict
/// single verification for the whole batch when the batch equation fails.
pub fn verify_all(checks: &[(SigCheck, usize)], messages: &[[u8; 32]]) -> Vec<bool> {
    const MIN_BATCH: usize = 4;
    if checks.len() >= MIN_BATCH {
        let mut keys = Vec::with_capacity(checks.len());
        let mut sigs = Vec::with_capacity(checks.len());
        let mut msgs: Vec<&[u8]> = Vec::with_capacity(checks.len());
        let mut ok = true;
        for (c, m) in checks {
            match verifying_key(&c.public_key) {
                Some(k) if r_is_acceptable(&c.signature) => {
                    keys.push(k);
                    sigs.push(Signature::from_bytes(&c.signature));
                    msgs.push(&messages[*m]);
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks.iter().map(|(c, m)| verify_one(c, &messages[*m])).collect()
}
