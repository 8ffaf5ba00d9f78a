//! The invalid-block path of the pipeline, in-process: a plugged-in rule passes a "poison"
//! transaction at ingest but rejects it when the block is voted on, so the block is decided
//! INVALID; its other transactions are requeued once and commit in a later block, the poison
//! one is dropped (status `invalid`), and a restart does not resurrect it.

use cairn::config::Config;
use cairn::crypto::Keypair;
use cairn::node::Node;
use cairn::tx::{Transaction, TxError};
use cairn::validation::{LedgerView, Rule, Validator};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rejects a transaction whose metadata says `poison` the second time it sees it.
#[derive(Default)]
struct PoisonOnVote(Mutex<HashMap<String, u32>>);

impl Rule for PoisonOnVote {
    fn name(&self) -> &str {
        "poison-on-vote"
    }
    fn check(&self, tx: &Transaction, _: &dyn LedgerView) -> Result<(), TxError> {
        if tx.metadata().get("poison") != Some(&json!(true)) {
            return Ok(());
        }
        let mut seen = self.0.lock().unwrap();
        let n = seen.entry(tx.id.clone()).or_default();
        *n += 1;
        if *n >= 2 {
            Err(TxError::ValidationError("poisoned at vote time".into()))
        } else {
            Ok(())
        }
    }
}

fn config(dir: &std::path::Path) -> Config {
    let kp = Keypair::generate();
    let mut c = Config::default();
    c.keypair.private = kp.private_b58();
    c.keypair.public = kp.public_b58;
    c.database.path = dir.to_path_buf();
    c.block.timeout_ms = 200; // all three submissions land in one block
    c
}

fn create(k: &Keypair, meta: Value) -> Vec<u8> {
    serde_json::to_vec(&cairn::tx::build_create(&[k], &[(vec![k.public_bytes()], 1)], json!({"n": rand::random::<u64>()}), meta)).unwrap()
}

fn wait_status(node: &Node, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if node.store.tx_status(id).unwrap() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{id}: status {:?}, wanted {want}", node.store.tx_status(id).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_block_requeues_the_valid_and_drops_the_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let node = Node::start(cfg.clone(), Validator::new().with_rule(Arc::new(PoisonOnVote::default()))).unwrap();
    let k = Keypair::generate();
    let good1 = node.submit(&create(&k, Value::Null), false).await.unwrap().tx.id.clone();
    let poison = node.submit(&create(&k, json!({"poison": true})), true).await.unwrap();
    let good2 = node.submit(&create(&k, Value::Null), false).await.unwrap().tx.id.clone();
    let poison_id = poison.tx.id.clone();
    // The commit waiter hears that the block was decided invalid.
    let decision = tokio::time::timeout(Duration::from_secs(20), poison.waiter.unwrap()).await.unwrap().unwrap();
    assert_eq!(decision, cairn::block::Decision::Invalid);
    let n = node.clone();
    tokio::task::spawn_blocking(move || {
        wait_status(&n, &good1, "valid");
        wait_status(&n, &good2, "valid");
        wait_status(&n, &poison_id, "invalid");
        // Block 0 is invalid with the poison reason; the goods committed in block 1.
        assert_eq!(n.store.block_status(0).unwrap(), Some(cairn::block::Decision::Invalid));
        let vote = &n.store.votes(0).unwrap()[0];
        assert!(vote.vote.invalid_reason.as_deref().unwrap().contains("poisoned at vote time"), "{vote:?}");
        assert_eq!(n.store.committed_height(&good1).unwrap(), Some(1));
        // The in-flight overlay is cleared just after the block is applied to the store.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while n.inflight_len() != 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(n.inflight_len(), 0, "in-flight transactions left after every block was applied");
        n.shutdown();
        (good1, poison_id)
    })
    .await
    .unwrap();
    drop(node);
    // After a restart the dropped transaction is not in flight again.
    let node = Node::start(cfg, Validator::new()).unwrap();
    assert_eq!(node.inflight_len(), 0);
    node.shutdown();
}
