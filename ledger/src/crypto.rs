//! Keys, hashes and signature verification. Keys are base58 as in BigchainDB (public: 32
//! bytes; private: the 32-byte seed). Verification follows `verify_strict` (what libsodium,
//! and so BigchainDB, accepts); batches are only a fast path, re-checked one by one on failure.

use crate::cc::SigCheck;
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

/// Lengths of a base58 public key that BigchainDB's transaction schema accepts (its pattern is
/// `[1-9a-zA-Z^OIl]{43,44}`). A valid Ed25519 key whose base58 is shorter (a small leading
/// value: about one key in a few thousand) can never own an output, so key generators skip it.
pub const PUBLIC_KEY_B58_CHARS: std::ops::RangeInclusive<usize> = 43..=44;

/// An Ed25519 keypair in BigchainDB's base58 encoding.
#[derive(Clone)]
pub struct Keypair {
    /// The signing key.
    pub signing: SigningKey,
    /// base58 of the public key.
    pub public_b58: String,
}

impl Keypair {
    /// A fresh random keypair whose public key BigchainDB's schema accepts (see
    /// [`PUBLIC_KEY_B58_CHARS`]; about one random key in a few thousand encodes shorter).
    pub fn generate() -> Self {
        loop {
            let k = Self::from_signing(SigningKey::generate(&mut rand::rngs::OsRng));
            if PUBLIC_KEY_B58_CHARS.contains(&k.public_b58.len()) {
                return k;
            }
        }
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

/// The encodings, sign bit cleared, of every point of small order: the y of each of the eight
/// torsion points, and the non-canonical `y + p` of those below 19 (0 and 1), which decompress to
/// the same points. Seven values, as in libsodium's blocklist; derived here from the curve's
/// own torsion constants.
static SMALL_ORDER_YS: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    let mut ys: Vec<[u8; 32]> = Vec::new();
    for t in curve25519_dalek::constants::EIGHT_TORSION {
        let mut y = t.compress().to_bytes();
        y[31] &= 0x7f;
        if y[1..].iter().all(|b| *b == 0) && y[0] < 19 {
            let mut plus_p = [0xff; 32];
            plus_p[0] = y[0] + 0xed;
            plus_p[31] = 0x7f;
            ys.push(plus_p);
        }
        ys.push(y);
    }
    ys.sort_unstable();
    ys.dedup();
    ys
});

/// True when the signature's R is not of small order (a `verify_strict` rule that the batch
/// equation does not apply by itself, so it is checked before batching). A byte comparison
/// against [`SMALL_ORDER_YS`] instead of decompressing R (a field exponentiation, ~15 % of the
/// verifier's time): an R that does not decompress at all fails the batch and then the strict
/// single check.
fn r_is_acceptable(sig: &[u8; 64]) -> bool {
    let mut y: [u8; 32] = sig[..32].try_into().expect("64-byte signature");
    y[31] &= 0x7f;
    !SMALL_ORDER_YS.contains(&y)
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

/// Signatures per chunk, at least, when [`verify_all_par`] splits a batch over cores: batch
/// verification keeps getting cheaper per signature up to a few hundred (see
/// `validation::validate_block_with`), so smaller chunks would cost more than they spread.
pub const PAR_CHUNK: usize = 256;

/// As [`verify_all`], but a batch large enough to give two or more cores a chunk of
/// [`PAR_CHUNK`] is split over the rayon pool. The node's ingest verifier is one thread;
/// without this, it would bound a node's intake at one core's verify rate (~43,000 tx/s)
/// however many cores the machine has. Small batches (a lightly loaded node) stay on the
/// calling thread. A bad signature also costs less: only its chunk falls back to single checks.
pub fn verify_all_par(checks: &[(SigCheck, usize)], messages: &[[u8; 32]]) -> Vec<bool> {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    if threads < 2 || checks.len() < 2 * PAR_CHUNK {
        return verify_all(checks, messages);
    }
    let chunk = checks.len().div_ceil(threads).max(PAR_CHUNK);
    checks.par_chunks(chunk).flat_map_iter(|c| verify_all(c, messages)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::CompressedEdwardsY;

    /// The definition the fast check replaces: R decompresses to a point of large order.
    fn r_decompresses_to_large_order(sig: &[u8; 64]) -> bool {
        let r: [u8; 32] = sig[..32].try_into().unwrap();
        CompressedEdwardsY(r).decompress().is_some_and(|p| !p.is_small_order())
    }

    fn with_r(r: [u8; 32]) -> [u8; 64] {
        let mut sig = [7u8; 64];
        sig[..32].copy_from_slice(&r);
        sig
    }

    #[test]
    fn small_order_check_agrees_with_decompression() {
        assert_eq!(SMALL_ORDER_YS.len(), 7, "libsodium lists seven small-order encodings");
        // Every small-order encoding, with either sign bit, is refused by both checks.
        for y in SMALL_ORDER_YS.iter() {
            for sign in [0u8, 0x80] {
                let mut r = *y;
                r[31] |= sign;
                let sig = with_r(r);
                assert!(!r_decompresses_to_large_order(&sig), "{r:?} should be small order");
                assert!(!r_is_acceptable(&sig), "{r:?} accepted");
            }
        }
        // Real signatures' R are accepted by both.
        let k = Keypair::from_seed([3; 32]);
        for i in 0..200u32 {
            let sig = ed25519_dalek::Signer::sign(&k.signing, &i.to_le_bytes()).to_bytes();
            assert!(r_decompresses_to_large_order(&sig) && r_is_acceptable(&sig));
        }
        // Random encodings: where R decompresses, both checks agree (those that do not
        // decompress fail the batch equation and the strict single check instead).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut decompressing = 0;
        for _ in 0..20_000 {
            let mut r = [0u8; 32];
            for b in r.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if CompressedEdwardsY(r).decompress().is_some() {
                decompressing += 1;
                assert_eq!(r_is_acceptable(&with_r(r)), r_decompresses_to_large_order(&with_r(r)), "{r:?}");
            }
        }
        assert!(decompressing > 5_000, "{decompressing} of 20,000 random encodings decompressed");
    }

    #[test]
    fn a_small_order_r_fails_in_a_batch_and_alone() {
        let k = Keypair::from_seed([5; 32]);
        let msgs: Vec<[u8; 32]> = (0..8u8).map(|i| [i; 32]).collect();
        let mut checks: Vec<(SigCheck, usize)> = (0..8).map(|i| (SigCheck { public_key: k.public_bytes(), signature: ed25519_dalek::Signer::sign(&k.signing, &msgs[i]).to_bytes() }, i)).collect();
        let mut bad = checks[3].0.signature;
        bad[..32].copy_from_slice(&SMALL_ORDER_YS[0]);
        checks[3].0.signature = bad;
        let verdicts = verify_all(&checks, &msgs);
        assert_eq!(verdicts, vec![true, true, true, false, true, true, true, true]);
        assert!(!verify_one(&checks[3].0, &msgs[3]));
    }

    #[test]
    fn a_batch_split_over_cores_gives_each_signature_its_own_verdict() {
        // Enough signatures for several chunks; messages are shared out of order so that a
        // chunk that looked up the wrong message index would fail its good signatures.
        let keys: Vec<Keypair> = (0..4u8).map(|i| Keypair::from_seed([i + 1; 32])).collect();
        let msgs: Vec<[u8; 32]> = (0..16u8).map(|i| [i; 32]).collect();
        let n = 5 * PAR_CHUNK + 7;
        let mut checks: Vec<(SigCheck, usize)> = (0..n)
            .map(|i| {
                let k = &keys[i % keys.len()];
                let m = (i * 7) % msgs.len();
                (SigCheck { public_key: k.public_bytes(), signature: ed25519_dalek::Signer::sign(&k.signing, &msgs[m]).to_bytes() }, m)
            })
            .collect();
        let bad = [3, PAR_CHUNK + 1, n - 1];
        for &i in &bad {
            checks[i].1 = (checks[i].1 + 1) % msgs.len(); // signed over another message
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let verdicts = pool.install(|| verify_all_par(&checks, &msgs));
        let expected: Vec<bool> = (0..n).map(|i| !bad.contains(&i)).collect();
        assert_eq!(verdicts, expected);
        assert_eq!(verify_all(&checks, &msgs), expected, "the single-thread path agrees");
    }
}
