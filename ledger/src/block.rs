//! Blocks and votes. A block header lists transaction ids (bodies stay in the backlog stream)
//! and is signed by its creator; every node signs a vote per block. Ids and signatures follow
//! BigchainDB 1.x: `id = sha3(serialize(block))`, signature over the same serialized text.

use crate::canonical;
use crate::crypto::{self, Keypair};
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The signed part of a block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockBody {
    /// Unix seconds, as a string (BigchainDB's format).
    pub timestamp: String,
    /// Transaction ids, in validation order.
    pub transactions: Vec<String>,
    /// The creator's public key.
    pub node_pubkey: String,
    /// Who votes: the keyring plus the creator.
    pub voters: Vec<String>,
    /// Backlog partition holding the bodies.
    pub partition: u32,
    /// First and last backlog sequence numbers the block consumed.
    pub range: [u64; 2],
}

/// A signed block header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Block {
    /// SHA3-256 of the canonical body.
    pub id: String,
    /// The signed body.
    pub block: BlockBody,
    /// base58 Ed25519 signature of the canonical body by `node_pubkey`.
    pub signature: String,
}

fn canonical_of<T: Serialize>(v: &T) -> String {
    canonical::to_string(&serde_json::to_value(v).expect("plain structs serialize"))
}

fn sign_b58(key: &Keypair, text: &str) -> String {
    bs58::encode(key.signing.sign(text.as_bytes()).to_bytes()).into_string()
}

fn verify_b58(pubkey: &str, text: &str, sig: &str) -> bool {
    let Ok(pk) = crypto::decode_public_key(pubkey) else { return false };
    let mut raw = [0u8; 64];
    if bs58::decode(sig).onto(&mut raw) != Ok(64) {
        return false;
    }
    crypto::verifying_key(&pk).is_some_and(|k| k.verify_strict(text.as_bytes(), &Signature::from_bytes(&raw)).is_ok())
}

/// Unix time in seconds, as BigchainDB's `gen_timestamp`.
pub fn timestamp() -> String {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string()
}

impl Block {
    /// Builds and signs a block.
    pub fn new(key: &Keypair, body: BlockBody) -> Self {
        let text = canonical_of(&body);
        Block { id: crypto::sha3_hex(text.as_bytes()), signature: sign_b58(key, &text), block: body }
    }

    /// True if the id is the hash of the body and the creator's signature verifies.
    pub fn verify(&self) -> bool {
        let text = canonical_of(&self.block);
        crypto::sha3_hex(text.as_bytes()) == self.id && verify_b58(&self.block.node_pubkey, &text, &self.signature)
    }
}

/// The signed part of a vote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VoteBody {
    /// The block voted on.
    pub voting_for_block: String,
    /// The block this node voted on before (its own chain of votes).
    pub previous_block: String,
    /// The verdict.
    pub is_block_valid: bool,
    /// Why invalid (null when valid).
    pub invalid_reason: Option<String>,
    /// Unix seconds.
    pub timestamp: String,
}

/// A signed vote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vote {
    /// The voter.
    pub node_pubkey: String,
    /// base58 signature of the canonical vote body.
    pub signature: String,
    /// The signed body.
    pub vote: VoteBody,
}

impl Vote {
    /// Builds and signs a vote.
    pub fn new(key: &Keypair, vote: VoteBody) -> Self {
        let text = canonical_of(&vote);
        Vote { node_pubkey: key.public_b58.clone(), signature: sign_b58(key, &text), vote }
    }

    /// True if the voter's signature verifies.
    pub fn verify(&self) -> bool {
        verify_b58(&self.node_pubkey, &canonical_of(&self.vote), &self.signature)
    }
}

/// What the votes decide for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not enough votes either way yet.
    Undecided,
    /// A majority of eligible voters said valid.
    Valid,
    /// Half or more said invalid (ties are invalid, as in BigchainDB).
    Invalid,
}

impl Decision {
    /// Lower-case name used by the status endpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Undecided => "undecided",
            Decision::Valid => "valid",
            Decision::Invalid => "invalid",
        }
    }
}

/// Tallies `votes` for `block`: the electorate is the keyring (a block cannot choose its own
/// voters: one listing only outsiders would otherwise stay undecided and stall every node);
/// only signed votes by keyring members, one per voter, count.
pub fn tally(block: &Block, votes: &[Vote], keyring: &[String]) -> Decision {
    let eligible: Vec<&String> = keyring.iter().collect();
    let n = eligible.len();
    if n == 0 {
        return Decision::Undecided;
    }
    let mut seen = std::collections::HashSet::new();
    let (mut valid, mut invalid) = (0, 0);
    for v in votes {
        if v.vote.voting_for_block != block.id || !eligible.contains(&&v.node_pubkey) || !seen.insert(&v.node_pubkey) || !v.verify() {
            continue;
        }
        if v.vote.is_block_valid {
            valid += 1
        } else {
            invalid += 1
        }
    }
    if 2 * invalid >= n {
        Decision::Invalid
    } else if 2 * valid > n {
        Decision::Valid
    } else {
        Decision::Undecided
    }
}

/// Serializes any value as JSON bytes for storage.
pub fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs serialize")
}

/// The JSON value of a block header.
pub fn block_json(b: &Block) -> Value {
    serde_json::to_value(b).expect("plain structs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(k: &Keypair, voters: Vec<String>) -> BlockBody {
        BlockBody { timestamp: "1".into(), transactions: vec!["a".repeat(64)], node_pubkey: k.public_b58.clone(), voters, partition: 0, range: [0, 0] }
    }

    #[test]
    fn majority_decides_and_forgeries_do_not_count() {
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
        let ring: Vec<String> = keys.iter().map(|k| k.public_b58.clone()).collect();
        let b = Block::new(&keys[0], body(&keys[0], ring.clone()));
        assert!(b.verify());
        let vote = |k: &Keypair, ok: bool| {
            Vote::new(k, VoteBody { voting_for_block: b.id.clone(), previous_block: "g".into(), is_block_valid: ok, invalid_reason: None, timestamp: "1".into() })
        };
        let two_valid = vec![vote(&keys[0], true), vote(&keys[1], true)];
        assert_eq!(tally(&b, &two_valid, &ring), Decision::Undecided);
        let three = vec![vote(&keys[0], true), vote(&keys[1], true), vote(&keys[2], true)];
        assert_eq!(tally(&b, &three, &ring), Decision::Valid);
        // a duplicate vote by one voter counts once
        let dup = vec![vote(&keys[0], true), vote(&keys[0], true), vote(&keys[0], true)];
        assert_eq!(tally(&b, &dup, &ring), Decision::Undecided);
        // a vote whose signature does not match its voter does not count
        let mut forged = vote(&keys[3], true);
        forged.node_pubkey = keys[1].public_b58.clone();
        assert_eq!(tally(&b, &[vote(&keys[0], true), vote(&keys[2], true), forged], &ring), Decision::Undecided);
        // a block listing only an outsider as voter is still decided by the keyring
        let mut outsiders_only = b.clone();
        outsiders_only.block.voters = vec![Keypair::generate().public_b58];
        assert_eq!(tally(&outsiders_only, &[vote(&keys[0], false), vote(&keys[1], false)], &ring), Decision::Invalid);
        // an outsider's vote does not count
        let outsider = Keypair::generate();
        assert_eq!(tally(&b, &[vote(&keys[0], true), vote(&keys[2], true), vote(&outsider, true)], &ring), Decision::Undecided);
        // half invalid is invalid
        assert_eq!(tally(&b, &[vote(&keys[0], false), vote(&keys[1], false)], &ring), Decision::Invalid);
        // a tampered block fails verification
        let mut t = b.clone();
        t.block.transactions.push("b".repeat(64));
        assert!(!t.verify());
    }
}
