//! The correctness gate after every point: once the nodes settle at one applied height, their
//! state digests must agree, every accepted transaction must be in exactly one VALID block on
//! every node, and no double-spend pair may have both sides committed. A point's figures are
//! published only when it passes; otherwise it is marked failed with the reasons.

use crate::http::{get_json, HttpClient};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the gate found.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Verdict {
    /// True when nothing below is wrong.
    pub passed: bool,
    /// What is wrong, one line each.
    pub reasons: Vec<String>,
    /// Each node's applied height when checked.
    pub heights: Vec<u64>,
    /// Each node's state digest when checked.
    pub digests: Vec<String>,
    /// Accepted transactions checked on each node.
    pub checked: usize,
}

/// Polls every node until they report the same applied height twice in a row (or `settle`
/// passes); returns heights and digests.
async fn settle_heights(client: &HttpClient, nodes: &[String], settle: Duration) -> (Vec<u64>, Vec<String>, Vec<String>) {
    let deadline = Instant::now() + settle;
    let mut previous: Option<Vec<u64>> = None;
    loop {
        let mut heights = Vec::new();
        let mut digests = Vec::new();
        let mut errors = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            match get_json(client, &format!("{n}/")).await {
                Ok(Some(v)) => {
                    heights.push(v["state"]["applied_height"].as_u64().unwrap_or(0));
                    digests.push(v["state"]["digest"].as_str().unwrap_or("").to_string());
                }
                Ok(None) => errors.push(format!("node {i} ({n}) answers 404 on /")),
                Err(e) => errors.push(format!("node {i} ({n}): {e:#}")),
            }
        }
        let same = errors.is_empty() && heights.windows(2).all(|w| w[0] == w[1]);
        if (same && previous.as_ref() == Some(&heights)) || Instant::now() > deadline {
            return (heights, digests, errors);
        }
        previous = Some(heights);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The heights of the VALID blocks holding each transaction on one node, walking heights
/// 0..=top (a failure names them, to find the blocks in the nodes' logs).
async fn valid_heights(client: &HttpClient, node: &str, top: u64) -> anyhow::Result<HashMap<String, Vec<u64>>> {
    let blocks: Vec<anyhow::Result<Option<serde_json::Value>>> =
        futures_util::stream::iter(0..=top).map(|h| async move { get_json(client, &format!("{node}/api/v1/blocks/{h}")).await }).buffered(16).collect().await;
    let mut valid_in: HashMap<String, Vec<u64>> = HashMap::new();
    for (height, b) in (0..).zip(blocks) {
        let Some(b) = b? else { continue };
        if b["status"] != "valid" {
            continue;
        }
        for t in b["transactions"].as_array().into_iter().flatten() {
            if let Some(id) = t["id"].as_str() {
                valid_in.entry(id.to_string()).or_default().push(height);
            }
        }
    }
    Ok(valid_in)
}

/// Checks `nodes` against the `accepted` ids and the double-spend `pairs` (ids of both sides).
pub async fn check(client: &HttpClient, nodes: &[String], accepted: &[String], pairs: &[(String, String)], settle: Duration) -> Verdict {
    let (heights, digests, errors) = settle_heights(client, nodes, settle).await;
    let mut v = Verdict { passed: false, reasons: errors, heights: heights.clone(), digests: digests.clone(), checked: accepted.len() };
    if !v.reasons.is_empty() {
        return v;
    }
    if heights.windows(2).any(|w| w[0] != w[1]) {
        v.reasons.push(format!("the nodes did not reach one applied height within {} s: {heights:?}", settle.as_secs()));
    } else if digests.windows(2).any(|w| w[0] != w[1]) {
        let list: Vec<String> = digests.iter().enumerate().map(|(i, d)| format!("node {i} {}", &d[..d.len().min(16)])).collect();
        v.reasons.push(format!("state digests differ at height {}: {}", heights[0], list.join(", ")));
    }
    for (i, n) in nodes.iter().enumerate() {
        let valid_in = match valid_heights(client, n, heights[i]).await {
            Ok(c) => c,
            Err(e) => {
                v.reasons.push(format!("node {i}: reading its blocks failed: {e:#}"));
                continue;
            }
        };
        let missing: Vec<&String> = accepted.iter().filter(|id| !valid_in.contains_key(id.as_str())).collect();
        let twice: Vec<&String> = accepted.iter().filter(|id| valid_in.get(id.as_str()).is_some_and(|h| h.len() > 1)).collect();
        let both = pairs.iter().filter(|(a, b)| valid_in.contains_key(a) && valid_in.contains_key(b)).count();
        if !missing.is_empty() {
            v.reasons.push(format!("node {i} ({n}): {} of {} accepted transactions are in no VALID block (first: {})", missing.len(), accepted.len(), missing[0]));
        }
        if !twice.is_empty() {
            v.reasons.push(format!(
                "node {i} ({n}): {} transactions are in more than one VALID block (first: {}, at heights {:?})",
                twice.len(),
                twice[0],
                valid_in[twice[0].as_str()]
            ));
        }
        if both > 0 {
            v.reasons.push(format!("node {i} ({n}): {both} double-spend pairs have both sides committed"));
        }
    }
    v.passed = v.reasons.is_empty();
    v
}
