//! What a run sends: pre-signed transactions laid out on a schedule before the clock starts.
//! CREATEs of a chosen size; TRANSFER chains (link k+1 spends link k's output, so it is sent
//! only once link k is committed); a mix; and conflicting double-spend pairs (two TRANSFERs of
//! one output, sent at the same moment to different nodes: at most one may commit). Spent
//! outputs come from CREATEs committed in an untimed setup phase. Keys derive from `--seed`,
//! so a seed reproduces a run's transactions exactly.

use bytes::Bytes;
use ledger::crypto::Keypair;
use rayon::prelude::*;
use serde_json::Value;

/// The shape of the load.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Spec {
    /// `create`, `transfer` or `mix`.
    pub workload: String,
    /// Canonical size of each CREATE in bytes.
    pub tx_bytes: usize,
    /// Share of TRANSFERs among the non-conflicting transactions (1 for `transfer`, 0 for `create`).
    pub transfer_share: f64,
    /// TRANSFERs per chain (link k+1 spends link k).
    pub chain_depth: usize,
    /// Share of all transactions that belong to double-spend pairs.
    pub double_spend_share: f64,
    /// Seed of every key (and so of every transaction id).
    pub seed: u64,
}

/// What one scheduled transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CREATE.
    Create,
    /// A TRANSFER (chain link).
    Transfer,
    /// One side of a double-spend pair.
    Conflict,
}

impl Kind {
    /// Name used in events.csv.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Transfer => "transfer",
            Kind::Conflict => "conflict",
        }
    }
}

/// One pre-signed transaction of the timed phase.
pub struct Tx {
    /// Its id.
    pub id: String,
    /// Its JSON body.
    pub body: Bytes,
    /// What it is.
    pub kind: Kind,
    /// Index (in the timed list) of the chain link it spends: sent only once that one is committed.
    pub after: Option<usize>,
    /// Index of the other side of its double-spend pair.
    pub twin: Option<usize>,
    /// Which target gets it (chains stay on one node; pair sides go to different ones).
    pub route: usize,
}

/// Setup transactions (committed before the clock starts) and the timed list.
pub struct Plan {
    /// CREATEs whose outputs the timed TRANSFERs and pairs spend.
    pub setup: Vec<(String, Bytes)>,
    /// The timed transactions, in schedule order.
    pub timed: Vec<Tx>,
}

/// splitmix64: a tiny seeded generator, enough to lay out a schedule reproducibly.
struct Mix64(u64);

impl Mix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The key for group `g` of a run with `seed` and `salt` (one key per 256 transactions): the
/// first key drawn from the group's generator that BigchainDB's schema accepts (a 42-character
/// public key made a 1,000,000-transaction run lose that key's 256 CREATEs to `400
/// SchemaValidationError`).
fn key(seed: u64, salt: u64, g: u64) -> Keypair {
    let mut r = Mix64(seed ^ salt.wrapping_mul(0xA24B_AED4_963E_E407) ^ g.wrapping_mul(0x9FB2_1C65_1E98_DF25));
    loop {
        let k = Keypair::from_seed(draw_seed(&mut r));
        if ledger::crypto::PUBLIC_KEY_B58_CHARS.contains(&k.public_b58.len()) {
            return k;
        }
    }
}

/// The next 32-byte key seed from a group's generator.
fn draw_seed(r: &mut Mix64) -> [u8; 32] {
    let mut s = [0u8; 32];
    for c in s.chunks_mut(8) {
        c.copy_from_slice(&r.next().to_le_bytes());
    }
    s
}

/// The last group's key, so a worker derives each key once (deriving costs a scalar multiplication).
#[derive(Default)]
struct KeyCache(Option<(u64, Keypair)>);

impl KeyCache {
    fn get(&mut self, seed: u64, salt: u64, g: u64) -> &Keypair {
        if self.0.as_ref().is_none_or(|(have, _)| *have != g) {
            self.0 = Some((g, key(seed, salt, g)));
        }
        &self.0.as_ref().expect("set").1
    }
}

fn encode(v: &Value) -> (String, Bytes) {
    (v["id"].as_str().expect("signed").to_string(), Bytes::from(serde_json::to_vec(v).expect("json")))
}

impl Spec {
    /// Checks the shares and sizes, saying which flag is wrong.
    pub fn check(&self) -> anyhow::Result<()> {
        if !["create", "transfer", "mix"].contains(&self.workload.as_str()) {
            anyhow::bail!("--workload {:?}: use create, transfer or mix", self.workload);
        }
        if !(0.0..=1.0).contains(&self.transfer_share) || !(0.0..=1.0).contains(&self.double_spend_share) {
            anyhow::bail!("--transfer-share and --double-spend-share are shares between 0 and 1");
        }
        if self.chain_depth == 0 {
            anyhow::bail!("--chain-depth must be at least 1");
        }
        if self.tx_bytes > 1_000_000 {
            anyhow::bail!("--tx-bytes {} is past what a node accepts (bodies up to 1 MB); use a smaller size", self.tx_bytes);
        }
        Ok(())
    }

    /// Lays out and signs `count` timed transactions over `routes` targets. `salt` makes each
    /// probe of a sweep point unique on the same ledger.
    pub fn plan(&self, count: usize, routes: usize, salt: u64) -> Plan {
        self.plan_with(count, routes, salt, &|| {})
    }

    /// [`Spec::plan`], calling `signed` once per transaction signed (for a progress bar).
    pub fn plan_with(&self, count: usize, routes: usize, salt: u64, signed: &(dyn Fn() + Sync)) -> Plan {
        let routes = routes.max(1);
        let mut rng = Mix64(self.seed ^ salt.rotate_left(17) ^ 0x5151);
        let pairs = ((count as f64 * self.double_spend_share) / 2.0).round() as usize;
        let rest = count - 2 * pairs.min(count / 2);
        let pairs = pairs.min(count / 2);
        let transfers = (rest as f64 * self.transfer_share).round() as usize;
        let creates = rest - transfers;
        let chains = transfers.div_ceil(self.chain_depth);

        // Slot kinds, shuffled (Fisher-Yates) so every kind is spread over the run; a pair takes one tag and two slots.
        #[derive(Clone, Copy)]
        enum Tag {
            C,
            T,
            P,
        }
        let mut tags: Vec<Tag> = std::iter::repeat_n(Tag::C, creates).chain(std::iter::repeat_n(Tag::T, transfers)).chain(std::iter::repeat_n(Tag::P, pairs)).collect();
        for i in (1..tags.len()).rev() {
            tags.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }

        // Setup: one CREATE per chain root and per pair, each group of 256 with its own key.
        let roots = chains + pairs;
        let setup_values: Vec<Value> = (0..roots as u64)
            .into_par_iter()
            .map_init(KeyCache::default, |keys, r| {
                signed();
                ledger::workload::create_tx(keys.get(self.seed, salt ^ 0x5e7, r / 256), r)
            })
            .collect();
        let owner = |r: usize| key(self.seed, salt ^ 0x5e7, r as u64 / 256);

        // Chains signed in parallel (each one in order); link k of every chain before link k+1.
        let chain_links: Vec<Vec<Value>> = (0..chains)
            .into_par_iter()
            .map(|c| {
                let len = self.chain_depth.min(transfers - c * self.chain_depth);
                let k = owner(c);
                let mut prev = setup_values[c].clone();
                (0..len)
                    .map(|l| {
                        signed();
                        let t = ledger::workload::transfer_tx(&k, &prev, &format!("s{salt}c{c}l{l}"));
                        prev = t.clone();
                        t
                    })
                    .collect()
            })
            .collect();
        let mut transfer_order = Vec::with_capacity(transfers);
        for l in 0..self.chain_depth {
            for (c, links) in chain_links.iter().enumerate() {
                if l < links.len() {
                    transfer_order.push((c, l));
                }
            }
        }
        let pair_values: Vec<(Value, Value)> = (0..pairs)
            .into_par_iter()
            .map(|p| {
                let k = owner(chains + p);
                let spent = &setup_values[chains + p];
                signed();
                signed();
                (ledger::workload::transfer_tx(&k, spent, &format!("s{salt}p{p}a")), ledger::workload::transfer_tx(&k, spent, &format!("s{salt}p{p}b")))
            })
            .collect();
        let create_values: Vec<Value> = (0..creates as u64)
            .into_par_iter()
            .map_init(KeyCache::default, |keys, i| {
                signed();
                ledger::workload::create_tx_sized(keys.get(self.seed, salt, i / 256), (salt << 40) ^ i, self.tx_bytes)
            })
            .collect();

        let mut timed = Vec::with_capacity(count);
        let mut link_index = vec![Vec::new(); chains];
        let (mut next_c, mut next_t, mut next_p) = (0, 0, 0);
        for tag in tags {
            let at = timed.len();
            match tag {
                Tag::C => {
                    let (id, body) = encode(&create_values[next_c]);
                    next_c += 1;
                    timed.push(Tx { id, body, kind: Kind::Create, after: None, twin: None, route: at % routes });
                }
                Tag::T => {
                    let (c, l) = transfer_order[next_t];
                    next_t += 1;
                    let (id, body) = encode(&chain_links[c][l]);
                    let after = if l > 0 { Some(link_index[c][l - 1]) } else { None };
                    link_index[c].push(at);
                    timed.push(Tx { id, body, kind: Kind::Transfer, after, twin: None, route: c % routes });
                }
                Tag::P => {
                    let (a, b) = &pair_values[next_p];
                    next_p += 1;
                    let ((ia, ba), (ib, bb)) = (encode(a), encode(b));
                    timed.push(Tx { id: ia, body: ba, kind: Kind::Conflict, after: None, twin: Some(at + 1), route: at % routes });
                    timed.push(Tx { id: ib, body: bb, kind: Kind::Conflict, after: None, twin: Some(at), route: (at + 1) % routes });
                }
            }
        }
        Plan { setup: setup_values.iter().map(encode).collect(), timed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(workload: &str, transfer_share: f64, ds: f64) -> Spec {
        Spec { workload: workload.into(), tx_bytes: 765, transfer_share, chain_depth: 3, double_spend_share: ds, seed: 42 }
    }

    #[test]
    fn group_keys_are_always_ones_bigchaindb_accepts() {
        // A run of 1,000,000 CREATEs (seed 13844430591981734968, salt 1795816684) lost group
        // 217's 256 transactions to `400 SchemaValidationError`: its first drawn key encodes
        // in 42 base58 characters. The key used now is the next draw.
        let (seed, salt, g): (u64, u64, u64) = (13_844_430_591_981_734_968, 1_795_816_684, 217);
        let mut r = Mix64(seed ^ salt.wrapping_mul(0xA24B_AED4_963E_E407) ^ g.wrapping_mul(0x9FB2_1C65_1E98_DF25));
        let first = Keypair::from_seed(draw_seed(&mut r));
        assert!(!ledger::tx::is_public_key(&first.public_b58), "the first draw was the short key: {}", first.public_b58);
        let k = key(seed, salt, g);
        assert_eq!(k.public_b58, Keypair::from_seed(draw_seed(&mut r)).public_b58, "the second draw");
        assert!(ledger::tx::is_public_key(&k.public_b58), "{}", k.public_b58);
        let tx = ledger::tx::Transaction::from_value(ledger::workload::create_tx(&k, 1)).expect("schema-valid CREATE");
        assert_eq!(tx.outputs[0].public_keys, vec![k.public_b58.clone()]);
    }

    #[test]
    fn a_plan_has_the_asked_shares_and_is_reproducible() {
        let p = spec("mix", 0.5, 0.2).plan(1000, 3, 1);
        assert_eq!(p.timed.len(), 1000);
        let n = |k: Kind| p.timed.iter().filter(|t| t.kind == k).count();
        assert_eq!((n(Kind::Conflict), n(Kind::Transfer), n(Kind::Create)), (200, 400, 400));
        // Roots: one per chain of 3 (134) and one per pair (100).
        assert_eq!(p.setup.len(), 134 + 100);
        for (i, t) in p.timed.iter().enumerate() {
            if let Some(a) = t.after {
                assert!(a < i && p.timed[a].kind == Kind::Transfer && p.timed[a].route == t.route);
            }
            if let Some(w) = t.twin {
                assert_eq!(p.timed[w].twin, Some(i));
                assert_ne!(p.timed[w].route, t.route, "pair sides go to different nodes");
            }
        }
        let again = spec("mix", 0.5, 0.2).plan(1000, 3, 1);
        assert!(p.timed.iter().zip(&again.timed).all(|(a, b)| a.id == b.id));
        let other_probe = spec("mix", 0.5, 0.2).plan(1000, 3, 2);
        assert!(p.timed.iter().all(|a| other_probe.timed.iter().all(|b| a.id != b.id)), "each probe's transactions are new");
    }
}
