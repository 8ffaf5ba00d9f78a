//! The HTTP API of a real `cairn` process: shapes, every kind of bad input, concurrency and
//! crash durability.

mod common;
use cairn::cc::Details;
use cairn::crypto::Keypair;
use cairn::tx::{self, OutputRef, Spend};
use common::{cairn, NodeProc};
use serde_json::{json, Value};
use std::time::Duration;

fn create(k: &Keypair, n: u64) -> Value {
    tx::build_create(&[k], &[(vec![k.public_bytes()], 1)], json!({"n": n, "who": "tester"}), json!({"note": format!("item {n}")}))
}

fn transfer(from: &Value, signer: &Keypair, to: &Keypair) -> Value {
    let out = &from["outputs"][0];
    let spend = Spend {
        fulfills: OutputRef { txid: from["id"].as_str().unwrap().into(), index: 0 },
        details: Details::from_json(&out["condition"]["details"]).unwrap(),
        owners_before: vec![signer.public_b58.clone()],
    };
    tx::build_transfer(&[spend], &[(vec![to.public_bytes()], 1)], from["id"].as_str().unwrap(), Value::Null, &[signer])
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn bad_input_gets_a_clear_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[("CAIRN_SERVER_MAX_BODY_BYTES", "4000")]);
    let k = Keypair::generate();
    let cases: Vec<(u16, Value, &str)> = vec![
        {
            let (s, v) = node.post(b"{not json", "async");
            (s, v, "not valid JSON")
        },
        {
            let (s, v) = node.post(&vec![b' '; 5000], "async");
            (s, v, "limit is 4000 bytes")
        },
        {
            let (s, v) = node.post(&body(&create(&k, 1)), "eventually");
            (s, v, "is not one of async, sync, commit")
        },
        {
            let mut t = create(&k, 2);
            t["metadata"] = json!({"changed": true});
            let (s, v) = node.post(&body(&t), "async");
            (s, v, "Invalid transaction (InvalidHash)")
        },
        {
            let mut t = create(&k, 3);
            t["version"] = json!("1.0");
            let (s, v) = node.post(&body(&t), "async");
            (s, v, "Invalid transaction schema: version")
        },
        {
            // BigchainDB answers 404 for a malformed id too (the driver's NotFoundError).
            let (s, v) = node.get("/api/v1/transactions/xyz");
            (s, v, "Not found")
        },
        {
            let (s, v) = node.get(&format!("/api/v1/transactions/{}", "a".repeat(64)));
            (s, v, "Not found")
        },
        {
            let (s, v) = node.get("/api/v1/outputs?public_key=abc");
            (s, v, "not a base58")
        },
        {
            let (s, v) = node.get(&format!("/api/v1/outputs?public_key={}&colour=red", k.public_b58));
            (s, v, "Unknown arguments: colour")
        },
        {
            let (s, v) = node.get(&format!("/api/v1/outputs?public_key={}&spent=maybe", k.public_b58));
            (s, v, "Boolean value must be")
        },
        {
            let (s, v) = node.get("/api/v1/statuses");
            (s, v, "Provide exactly one query parameter")
        },
        {
            let (s, v) = node.get("/api/v1/assets?search=");
            (s, v, "text_search cannot be empty")
        },
        {
            let (s, v) = node.get("/api/v1/transactions");
            (s, v, "Missing required parameter asset_id")
        },
        {
            let (s, v) = node.get("/no/such/path");
            (s, v, "Not found")
        },
    ];
    for (status, v, needle) in cases {
        assert!(status == 400 || status == 404 || status == 413, "{needle}: status {status}");
        assert_eq!(v["status"], status, "{needle}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{needle}: {v}");
    }
    // The node still works after all that, and counted what it refused.
    let t = create(&k, 9);
    assert_eq!(node.post(&body(&t), "commit").0, 202);
    let (_, info) = node.get("/");
    assert_eq!(info["stats"]["since_start"]["accepted"], 1, "{info}");
    assert_eq!(info["stats"]["since_start"]["rejected"], 3, "malformed JSON, InvalidHash, version 1.0: {info}");
}

#[test]
fn lifecycle_blocks_votes_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let (a, b) = (Keypair::generate(), Keypair::generate());
    let c = create(&a, 1);
    let id = c["id"].as_str().unwrap();
    let (s, echoed) = node.post(&body(&c), "commit");
    assert_eq!((s, &echoed), (202, &c));
    assert_eq!(node.get(&format!("/api/v1/statuses?transaction_id={id}")).1, json!({"status": "valid"}));
    let (_, heights) = node.get(&format!("/api/v1/blocks?transaction_id={id}"));
    let h = heights[0].as_u64().unwrap();
    let (_, block) = node.get(&format!("/api/v1/blocks/{h}"));
    assert_eq!(block["transactions"][0], c);
    assert_eq!(block["status"], "valid");
    let block_id = block["id"].as_str().unwrap();
    assert_eq!(node.get(&format!("/api/v1/blocks/{block_id}")).1["height"], h);
    assert_eq!(node.get(&format!("/api/v1/statuses?block_id={block_id}")).1, json!({"status": "valid"}));
    let (_, votes) = node.get(&format!("/api/v1/votes?block_id={block_id}"));
    let (_, info) = node.get("/");
    assert_eq!(votes[0]["node_pubkey"], info["public_key"]);
    assert_eq!(votes[0]["vote"]["is_block_valid"], true);
    // Transfer, then the asset has two transactions in order and outputs moved.
    let t = transfer(&c, &a, &b);
    assert_eq!(node.post(&body(&t), "sync").0, 202);
    node.wait_valid(t["id"].as_str().unwrap(), Duration::from_secs(10));
    let (_, txs) = node.get(&format!("/api/v1/transactions?asset_id={id}"));
    assert_eq!(txs, json!([c, t]));
    assert_eq!(node.get(&format!("/api/v1/transactions?asset_id={id}&last_tx=true")).1, json!([t]));
    assert_eq!(node.get(&format!("/api/v1/outputs?public_key={}&spent=false", b.public_b58)).1, json!([{"transaction_id": t["id"], "output_index": 0}]));
    // Duplicate submission is refused with a pointer to its status.
    let (s, v) = node.post(&body(&c), "async");
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("DuplicateTransaction"), "{v}");
    // Metadata search finds it; the trailing-slash form of every path works.
    assert_eq!(node.get("/api/v1/metadata/?search=item%201").1[0]["id"], c["id"]);
}

/// A refused signature is reported against the input that carries it, also when an input
/// carries several (a threshold condition's): the node used to name the signature's position
/// among all of the transaction's signatures instead ("input 1" of a one-input transaction).
#[test]
fn a_forged_signature_in_a_threshold_input_names_that_input() {
    use cairn::cc::Fulfillment;
    use ed25519_dalek::Signer;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let (a, b, to) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let coin = tx::build_create(&[&a], &[(vec![a.public_bytes(), b.public_bytes()], 1)], json!({"kind": "2-of-2"}), Value::Null);
    assert_eq!(node.post(&body(&coin), "commit").0, 202);
    let out = &coin["outputs"][0];
    let spend = Spend {
        fulfills: OutputRef { txid: coin["id"].as_str().unwrap().into(), index: 0 },
        details: Details::from_json(&out["condition"]["details"]).unwrap(),
        owners_before: vec![a.public_b58.clone(), b.public_b58.clone()],
    };
    let mut t = tx::build_transfer(&[spend], &[(vec![to.public_bytes()], 1)], coin["id"].as_str().unwrap(), Value::Null, &[&a, &b]);
    // Replace the second signature of input 0 (in the order they are checked) with one by the
    // same key over another message.
    let parsed = tx::Transaction::parse(&body(&t)).unwrap();
    let Fulfillment::Threshold { mut subfulfillments, subconditions } = parsed.inputs[0].fulfillment.clone() else { panic!("2-of-2 input") };
    let Fulfillment::Ed25519 { public_key, signature } = &mut subfulfillments[1] else { panic!("ed25519 subfulfillment") };
    let signer = [&a, &b].into_iter().find(|k| k.public_bytes() == *public_key).unwrap();
    *signature = signer.signing.sign(b"some other message").to_bytes();
    t["inputs"][0]["fulfillment"] = json!(Fulfillment::Threshold { subfulfillments, subconditions }.to_uri());
    tx::set_id(&mut t);
    let (s, v) = node.post(&body(&t), "sync");
    assert_eq!(s, 400, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("InvalidSignature") && message.contains("input 0 of transaction"), "{v}");
}

#[test]
fn concurrent_conflicting_spends_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let a = Keypair::generate();
    let c = create(&a, 1);
    assert_eq!(node.post(&body(&c), "commit").0, 202);
    let spends: Vec<Vec<u8>> = (0..16).map(|_| body(&transfer(&c, &a, &Keypair::generate()))).collect();
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = spends.iter().map(|b| s.spawn(|| node.post(b, "async"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&Value> = results.iter().filter(|(s, _)| *s == 202).map(|(_, v)| v).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (s, v) in &results {
        if *s != 202 {
            assert!(v["message"].as_str().unwrap().contains("DoubleSpend"), "{v}");
        }
    }
    node.wait_valid(winners[0]["id"].as_str().unwrap(), Duration::from_secs(10));
    assert_eq!(node.get(&format!("/api/v1/transactions?asset_id={}&operation=TRANSFER", c["id"].as_str().unwrap())).1.as_array().unwrap().len(), 1);
}

#[test]
fn nothing_acknowledged_is_lost_on_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // A long block timeout keeps accepted transactions in the backlog when the node dies.
    let mut node = NodeProc::start(dir.path(), &[("CAIRN_BLOCK_TIMEOUT_MS", "300")]);
    let k = Keypair::generate();
    let txs: Vec<Value> = (0..300).map(|i| create(&k, i)).collect();
    let bodies: Vec<Vec<u8>> = txs.iter().map(body).collect();
    let accepted: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = bodies.chunks(75).map(|chunk| {
            let node = &node;
            s.spawn(move || chunk.iter().filter_map(|b| {
                let (st, v) = node.post(b, "async");
                (st == 202).then(|| v["id"].as_str().unwrap().to_string())
            }).collect::<Vec<_>>())
        }).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(accepted.len(), 300);
    node.kill9();
    node.restart();
    for id in &accepted {
        node.wait_valid(id, Duration::from_secs(30));
    }
    let (_, info) = node.get("/");
    assert_eq!(info["stats"]["committed"], 300);
    // And the clean shutdown path exits 0.
    assert!(node.terminate().success());
}

/// The websocket stream sends every committed transaction once, in commit order (block by
/// block, each in its block's order), however the node groups the frames into socket writes: a
/// block's events are written together.
#[test]
fn the_stream_sends_every_commit_once_in_block_order() {
    let dir = tempfile::tempdir().unwrap();
    // A long block timeout puts the transactions into a few large blocks: bursts of events.
    let node = NodeProc::start(dir.path(), &[("CAIRN_BLOCK_TIMEOUT_MS", "300")]);
    let (mut ws, _) = tungstenite::connect(format!("{}/api/v1/streams/valid_transactions", node.ws)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    // The node subscribes the socket right after the upgrade answer; give it that moment.
    std::thread::sleep(Duration::from_millis(300));
    let k = Keypair::generate();
    let bodies: Vec<Vec<u8>> = (0..600).map(|i| body(&create(&k, i))).collect();
    let mut accepted: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = bodies.chunks(150).map(|chunk| {
            let node = &node;
            s.spawn(move || chunk.iter().map(|b| {
                let (st, v) = node.post(b, "async");
                assert_eq!(st, 202, "{v}");
                v["id"].as_str().unwrap().to_string()
            }).collect::<Vec<_>>())
        }).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut events: Vec<Value> = Vec::new();
    while events.len() < accepted.len() {
        match ws.read().expect("an event within 30 s") {
            tungstenite::Message::Text(t) => events.push(serde_json::from_str(t.as_str()).unwrap()),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let mut sent: Vec<String> = events.iter().map(|e| e["transaction_id"].as_str().unwrap().to_string()).collect();
    // Commit order: heights never go back, and each height's events list its block's transactions.
    let heights: Vec<u64> = events.iter().map(|e| e["height"].as_u64().unwrap()).collect();
    assert!(heights.windows(2).all(|w| w[0] <= w[1]), "heights out of order: {heights:?}");
    let mut from = 0;
    let mut largest = 0;
    while from < events.len() {
        let h = heights[from];
        let to = from + heights[from..].iter().take_while(|x| **x == h).count();
        let (st, block) = node.get(&format!("/api/v1/blocks/{h}"));
        assert_eq!((st, block["status"].as_str()), (200, Some("valid")));
        let in_block: Vec<&str> = block["transactions"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert_eq!(sent[from..to].iter().map(String::as_str).collect::<Vec<_>>(), in_block, "events of block {h}");
        assert!(events[from..to].iter().all(|e| e["block_id"] == block["id"]));
        largest = largest.max(to - from);
        from = to;
    }
    assert!(largest > 1, "every block held one transaction: no burst was exercised");
    // Every accepted transaction exactly once.
    sent.sort();
    accepted.sort();
    assert_eq!(sent, accepted);
}

/// A tmpfs mounted for a test and unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output().map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed (needs root): {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(SmallDisk(at.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let st = std::process::Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(st.success(), "remount of the test tmpfs failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: fjall refuses every write after its first failed one, so the node must not
/// go on answering 503. It exits non-zero saying what happened and what to do, and after
/// space is freed and it is started again, every transaction it acknowledged commits.
#[test]
fn a_full_disk_stops_the_node_with_what_to_do_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match SmallDisk::mount(&dir.path().join("data"), "16m") {
        Ok(d) => d,
        Err(e) if !common::require_external() => {
            eprintln!("\n*** SKIP a_full_disk_stops_the_node_with_what_to_do_and_loses_nothing: {e} ***\n");
            return;
        }
        Err(e) => panic!("{e} (CAIRN_REQUIRE_EXTERNAL=1)"),
    };
    let mut node = NodeProc::start(dir.path(), &[]);
    let url = format!("{}/api/v1/transactions?mode=async", node.api);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (accepted, refusals): (Vec<String>, Vec<String>) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u64).map(|t| {
            let (url, stop) = (&url, &stop);
            s.spawn(move || {
                let k = Keypair::generate();
                let (mut ok, mut refused) = (Vec::new(), Vec::new());
                for i in 0..100_000u64 {
                    if t != 0 && stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let tx = create(&k, t * 1_000_000 + i);
                    match ureq::post(url).send_bytes(&body(&tx)) {
                        Ok(r) if r.status() == 202 => ok.push(tx["id"].as_str().unwrap().to_string()),
                        Ok(r) => refused.push(format!("{} {}", r.status(), r.into_string().unwrap_or_default())),
                        Err(ureq::Error::Status(code, r)) => refused.push(format!("{code} {}", r.into_string().unwrap_or_default())),
                        // The node stopped: nothing more to send.
                        Err(_) => break,
                    }
                    // After the first refusal the others stop; thread 0 keeps posting until
                    // the node has stopped: what it is told meanwhile must say why.
                    if !refused.is_empty() {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                (ok, refused)
            })
        }).collect();
        let mut all = (Vec::new(), Vec::new());
        for h in hs {
            let (ok, refused) = h.join().unwrap();
            all.0.extend(ok);
            all.1.extend(refused);
        }
        all
    });
    assert!(accepted.len() > 1000, "only {} accepted before the disk filled", accepted.len());
    assert!(refusals.iter().all(|r| r.starts_with("503")), "refusals other than 503: {refusals:?}");
    assert!(
        refusals.iter().any(|r| r.contains("this node is stopping: its local store refuses all writes") && !r.contains(&dir.path().display().to_string())),
        "no refusal says why (without the server's paths): {refusals:?}"
    );
    let status = node.wait_exit(Duration::from_secs(30)).expect("the node kept running on a store that refuses writes");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    let log = node.log();
    for needle in ["refuses all writes", "No space left on device", "free space there; then start the node again"] {
        assert!(log.contains(needle), "the log does not say {needle:?}:\n{}", &log[log.len().saturating_sub(2000)..]);
    }

    disk.grow("256m");
    node.restart();
    for id in &accepted {
        node.wait_valid(id, Duration::from_secs(60));
    }
    let (_, info) = node.get("/");
    assert!(info["stats"]["committed"].as_u64().unwrap() >= accepted.len() as u64);
    assert!(node.terminate().success());
}

/// A node started from a shell with a low soft open-file limit raises it to the hard one, and
/// so serves more clients at once than that soft limit would let it accept.
#[test]
fn a_node_raises_its_open_file_limit_and_serves_more_clients_than_the_shell_allowed() {
    use std::io::{Read, Write};
    let field = |pid: u32, i: usize| -> u64 {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
        line.split_whitespace().nth(3 + i).unwrap().parse().unwrap()
    };
    let me = std::process::id();
    let clients = 400;
    assert!(field(me, 1) >= 2 * clients as u64 + 100, "this test needs a hard open-file limit above {}: raise it (ulimit -Hn)", 2 * clients + 100);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with_soft_open_files(dir.path(), &[], Some(200));
    let (soft, hard) = (field(node.pid(), 0), field(node.pid(), 1));
    assert_eq!(soft, hard, "the node kept the shell's soft limit");
    let log = std::fs::read_to_string(node.data.with_extension("log")).unwrap();
    assert!(log.contains("open-file limit raised from 200"), "{log}");
    // 400 clients connected at once, each answered: past the soft limit of 200 the node's
    // accepts would fail with EMFILE and these would wait.
    let addr = node.api.trim_start_matches("http://").to_string();
    let mut conns: Vec<std::net::TcpStream> = (0..clients).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap_or_else(|e| panic!("client {i} got no answer: {e}"));
        assert_eq!(&head, b"HTTP/1.1 200", "client {i}");
    }
}

#[test]
fn cli_configure_show_export_drop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let (code, _, err) = cairn(&cfg, &["export-my-pubkey"]);
    assert_eq!(code, 1);
    assert!(err.contains("cairn configure -y"), "{err}");
    let (code, out, _) = cairn(&cfg, &["configure", "-y"]);
    assert_eq!(code, 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
    let file = std::fs::read_to_string(&cfg).unwrap();
    let private = file.lines().find(|l| l.starts_with("private")).unwrap().split('"').nth(1).unwrap().to_string();
    assert!(!out.contains(&private), "configure printed the private key");
    let (_, shown, _) = cairn(&cfg, &["show-config"]);
    assert!(!shown.contains(&private) && shown.contains("<hidden"), "{shown}");
    let (_, pubkey, _) = cairn(&cfg, &["export-my-pubkey"]);
    assert!(cairn::tx::is_public_key(pubkey.trim()), "{pubkey}");
    // configure again keeps the keypair
    cairn(&cfg, &["configure", "-y"]);
    assert_eq!(cairn(&cfg, &["export-my-pubkey"]).1, pubkey);
    // init / drop
    let data = dir.path().join("d");
    let envd = [("CAIRN_DATABASE_PATH", data.to_str().unwrap())];
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).arg("-c").arg(&cfg).args(args).envs(envd).stdin(std::process::Stdio::null()).output().unwrap();
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(run(&["init"]).0, 0);
    let (code, msg) = run(&["init"]);
    assert_eq!(code, 1);
    assert!(msg.contains("already exists"), "{msg}");
    let (code, msg) = run(&["drop"]);
    assert_eq!(code, 1, "drop without -y on a non-terminal must refuse: {msg}");
    assert!(msg.contains("pass -y"), "{msg}");
    assert_eq!(run(&["drop", "-y"]).0, 0);
    assert!(!data.join("store").exists());
    // a bad flag is a usage error naming the flag
    let (code, msg) = run(&["start", "--colour"]);
    assert_eq!(code, 2);
    assert!(msg.contains("--colour"), "{msg}");
    // a bad env value is named
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).arg("-c").arg(&cfg).arg("show-config").env("CAIRN_STATSD_PORT", "lots").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("CAIRN_STATSD_PORT"));
}

/// `cairn --version` names the commit the binary was built from (what benchmark results and
/// deployed hosts report), as git sees this work tree now: the build script reruns when the
/// commit or a source changes, so a stale value fails here.
#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(o.status.success() && version.starts_with(concat!("cairn ", env!("CARGO_PKG_VERSION"), " (commit ")), "{version}");
    let head = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    match head {
        Ok(h) if h.status.success() => {
            let head = String::from_utf8_lossy(&h.stdout).trim().to_string();
            assert!(version.contains(&format!("(commit {head}")), "{version} is not HEAD {head}");
        }
        _ => assert!(version.ends_with("(commit unknown)"), "outside a git work tree: {version}"),
    }
}

/// Every key form BigchainDB refuses, at every depth, in asset data and in metadata: 400 with
/// BigchainDB's message, nothing stored. Unusual keys that are allowed, and any value, commit.
#[test]
fn key_names_bigchaindb_refuses_are_rejected_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let k = Keypair::generate();
    let forbidden = ["$set", "$", "a.b", ".", "trailing.", "nul\u{0}inside", "\u{0}"];
    // Where the key sits: top level, nested object, object inside an array, array in an array.
    let places: [fn(&str) -> Value; 4] = [
        |key| json!({ key: 1 }),
        |key| json!({"outer": {"inner": { key: "v" }}}),
        |key| json!({"list": [1, { key: true }]}),
        |key| json!({"rows": [[{"ok": [{ key: null }]}]]}),
    ];
    let mut refused = 0;
    for key in forbidden {
        for place in places {
            for in_metadata in [false, true] {
                let (asset, metadata) = if in_metadata { (json!({"fine": 1}), place(key)) } else { (place(key), Value::Null) };
                let t = tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], asset, metadata);
                let (s, v) = node.post(&body(&t), "async");
                let what = if in_metadata { "metadata" } else { "asset" };
                let want = format!(
                    "Invalid transaction (ValidationError): Invalid key name \"{key}\" in {what} object. The key name cannot contain characters \".\", \"$\" or null characters"
                );
                assert_eq!((s, v), (400, json!({"status": 400, "message": want})), "key {key:?} in {what}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, forbidden.len() * 8);
    // Allowed: `$` not first, other punctuation, unicode, empty and blank keys; values are free.
    let allowed_keys = ["a$", "price_$", "@type", "ключ", "", " ", "a-b/c:d", "x,y"];
    let mut ok_ids = Vec::new();
    for (i, key) in allowed_keys.iter().enumerate() {
        let asset = json!({ *key: {"nested": [{ *key: "$set" }]}, "n": i });
        let metadata = json!({ *key: "a.b", "v": "\u{0}$.", "arr": ["$x", {"y": "."}] });
        let t = tx::build_create(&[&k], &[(vec![k.public_bytes()], 1)], asset, metadata);
        let (s, v) = node.post(&body(&t), "async");
        assert_eq!(s, 202, "key {key:?}: {v}");
        ok_ids.push(t["id"].as_str().unwrap().to_string());
    }
    for id in &ok_ids {
        node.wait_valid(id, Duration::from_secs(10));
    }
    let (_, info) = node.get("/");
    assert_eq!(info["stats"]["committed"], ok_ids.len(), "only the allowed ones are stored: {info}");
    assert_eq!(info["stats"]["since_start"]["rejected"], refused, "{info}");
}

#[test]
fn index_paths_and_validators_match_bigchaindb() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[]);
    let (_, api) = node.get("/api/v1/");
    for (name, path) in [("transactions", "/transactions/"), ("assets", "/assets/"), ("metadata", "/metadata/"), ("outputs", "/outputs/"), ("blocks", "/blocks/"), ("validators", "/validators")] {
        assert_eq!(api[name], path, "{api}");
    }
    assert!(api["streams"].as_str().unwrap().starts_with("ws://"), "{api}");
    let (_, root) = node.get("/");
    assert_eq!(root["api"]["v1"]["transactions"], "/api/v1/transactions/", "{root}");
    assert_eq!(root["api"]["v1"]["validators"], "/api/v1/validators", "{root}");
    // The only member is this node: its key, as upper-case hex of the 32 raw bytes.
    let me = cairn::crypto::decode_public_key(root["public_key"].as_str().unwrap()).unwrap();
    let hex: String = me.iter().map(|b| format!("{b:02X}")).collect();
    let want = json!([{"pub_key": {"data": hex, "type": "ed25519"}, "power": 1}]);
    assert_eq!(node.get("/api/v1/validators").1, want);
    assert_eq!(node.get("/api/v1/validators/").1, want);
    // With a keyring: every member once, this node included, in the federation's key order.
    let others = [Keypair::generate().public_b58, Keypair::generate().public_b58];
    let dir2 = tempfile::tempdir().unwrap();
    let keyring = others.join(",");
    let fed = NodeProc::start(dir2.path(), &[("CAIRN_KEYRING", keyring.as_str())]);
    let mut members: Vec<String> = others.to_vec();
    members.push(fed.get("/").1["public_key"].as_str().unwrap().to_string());
    members.sort();
    let hexes: Vec<Value> = members
        .iter()
        .map(|m| json!(cairn::crypto::decode_public_key(m).unwrap().iter().map(|b| format!("{b:02X}")).collect::<String>()))
        .collect();
    let (_, vals) = fed.get("/api/v1/validators");
    let got: Vec<Value> = vals.as_array().unwrap().iter().map(|v| v["pub_key"]["data"].clone()).collect();
    assert_eq!(got, hexes, "{vals}");
}
