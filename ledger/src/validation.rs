//! Transaction validation: stateless checks (id, signatures) and stateful ones (inputs exist
//! and are unspent, amounts balance, one asset, conditions match) against a [`LedgerView`]
//! plus an [`Overlay`] of accepted-but-uncommitted transactions. Extra rules plug in through
//! [`Rule`]. Block validation verifies all signatures of a block in parallel batches.

use crate::cc::Condition;
use crate::crypto;
use crate::tx::{Operation, OutputRef, Transaction, TxError};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What validation needs to know of a committed (or pending) output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    /// The condition locking it.
    pub condition: Condition,
    /// Its amount.
    pub amount: u64,
    /// The asset it carries.
    pub asset_id: String,
}

/// Read access to committed state; the store implements it.
pub trait LedgerView: Sync {
    /// True if the transaction is in a VALID block.
    fn is_committed(&self, txid: &str) -> bool;
    /// A committed output, if the transaction and index exist.
    fn output(&self, r: &OutputRef) -> Option<OutputInfo>;
    /// The committed transaction spending this output, if any.
    fn spender(&self, r: &OutputRef) -> Option<String>;
}

/// Transactions accepted on top of committed state and not yet decided: the node's
/// in-flight set at ingest, or the earlier transactions of a block during a vote.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    ids: HashSet<String>,
    spent: HashMap<OutputRef, String>,
    created: HashMap<String, Vec<OutputInfo>>,
}

impl Overlay {
    /// True if `txid` is in the overlay.
    pub fn contains(&self, txid: &str) -> bool {
        self.ids.contains(txid)
    }

    /// Number of transactions held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a transaction's effects (its id, its spends, its new outputs).
    pub fn add(&mut self, tx: &Transaction) {
        self.ids.insert(tx.id.clone());
        for input in &tx.inputs {
            if let Some(r) = &input.fulfills {
                self.spent.insert(r.clone(), tx.id.clone());
            }
        }
        self.created.insert(tx.id.clone(), outputs_of(tx));
    }

    /// Removes a transaction's effects (after it is committed or dropped).
    pub fn remove(&mut self, tx: &Transaction) {
        if self.ids.remove(&tx.id) {
            for input in &tx.inputs {
                if let Some(r) = &input.fulfills {
                    if self.spent.get(r) == Some(&tx.id) {
                        self.spent.remove(r);
                    }
                }
            }
            self.created.remove(&tx.id);
        }
    }
}

/// The outputs a transaction creates, as validation sees them.
pub fn outputs_of(tx: &Transaction) -> Vec<OutputInfo> {
    tx.outputs
        .iter()
        .map(|o| OutputInfo { condition: o.condition.clone(), amount: o.amount, asset_id: tx.asset_id.clone() })
        .collect()
}

/// An extra validation rule a federation can plug in (all nodes must run the same rules).
pub trait Rule: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &str;
    /// Returns an error (usually `TxError::ValidationError`) to reject the transaction.
    fn check(&self, tx: &Transaction, view: &dyn LedgerView) -> Result<(), TxError>;
}

/// Runs the built-in checks and the plugged-in rules.
#[derive(Clone, Default)]
pub struct Validator {
    rules: Vec<Arc<dyn Rule>>,
}

impl Validator {
    /// A validator with the built-in rules only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn with_rule(mut self, rule: Arc<dyn Rule>) -> Self {
        self.rules.push(rule);
        self
    }

    /// Id, key names and every signature; no state needed.
    pub fn check_stateless(&self, tx: &Transaction) -> Result<(), TxError> {
        tx.check_intrinsic()?;
        let checks = tx.signature_checks();
        let msgs = tx.signing_messages();
        match crypto::verify_all(&checks, &msgs).iter().position(|ok| !ok) {
            None => Ok(()),
            Some(i) => Err(bad_signature(tx, checks[i].1)),
        }
    }

    /// Everything that depends on state. `overlay_inputs` lets inputs come from the overlay
    /// (true inside a block; false at ingest, where inputs must be committed).
    pub fn check_stateful(&self, tx: &Transaction, view: &dyn LedgerView, overlay: &Overlay, overlay_inputs: bool) -> Result<(), TxError> {
        if view.is_committed(&tx.id) || overlay.contains(&tx.id) {
            return Err(TxError::DuplicateTransaction(format!("transaction `{}` already exists", tx.id)));
        }
        if tx.operation == Operation::Transfer {
            let mut seen = HashSet::with_capacity(tx.inputs.len());
            let mut total_in: u128 = 0;
            for (i, input) in tx.inputs.iter().enumerate() {
                let r = input.fulfills.as_ref().expect("TRANSFER inputs have fulfills (schema)");
                if !seen.insert(r) {
                    return Err(TxError::DoubleSpend(format!("transaction spends output {}:{} twice", r.txid, r.index)));
                }
                let out = view.output(r).or_else(|| {
                    overlay_inputs.then(|| overlay.created.get(&r.txid).and_then(|o| o.get(r.index as usize).cloned())).flatten()
                });
                let Some(out) = out else {
                    let hint = if overlay.contains(&r.txid) { " (it is not committed yet: retry once it is valid)" } else { "" };
                    return Err(TxError::InputDoesNotExist(format!("input {i} spends {}:{} which does not exist{hint}", r.txid, r.index)));
                };
                if let Some(by) = view.spender(r).or_else(|| overlay.spent.get(r).cloned()) {
                    return Err(TxError::DoubleSpend(format!("output {}:{} is already spent by transaction {by}", r.txid, r.index)));
                }
                if out.asset_id != tx.asset_id {
                    return Err(TxError::AssetIdMismatch(format!(
                        "input {i} carries asset {} but the transaction transfers asset {}",
                        out.asset_id, tx.asset_id
                    )));
                }
                if input.fulfillment.condition() != out.condition {
                    return Err(TxError::InvalidSignature(format!(
                        "input {i}'s fulfillment does not match the condition of output {}:{}",
                        r.txid, r.index
                    )));
                }
                total_in += out.amount as u128;
            }
            let total_out: u128 = tx.outputs.iter().map(|o| o.amount as u128).sum();
            if total_in != total_out {
                return Err(TxError::AmountError(format!(
                    "The amount used in the inputs `{total_in}` needs to be same as the amount used in the outputs `{total_out}`"
                )));
            }
        }
        for rule in &self.rules {
            rule.check(tx, view).map_err(|e| match e {
                TxError::ValidationError(m) => TxError::ValidationError(format!("{}: {m}", rule.name())),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Full validation of one transaction on top of committed state and `overlay`.
    pub fn validate(&self, tx: &Transaction, view: &dyn LedgerView, overlay: &Overlay, overlay_inputs: bool) -> Result<(), TxError> {
        self.check_stateless(tx)?;
        self.check_stateful(tx, view, overlay, overlay_inputs)
    }

    /// Validates a block's transactions in order, each against committed state plus the
    /// earlier valid ones (so two spends of one output inside a block: the second fails).
    /// Stateless checks run on all cores, with signatures verified in batches.
    pub fn validate_block<T: std::borrow::Borrow<Transaction> + Sync>(&self, txs: &[T], view: &dyn LedgerView, base: &Overlay) -> Vec<Result<(), TxError>> {
        self.validate_block_with(txs, view, base, &|_| false)
    }

    /// As [`Validator::validate_block`], but skips the stateless checks (id, signatures) of
    /// transactions for which `verified` says this node already ran them on this very object
    /// (its in-memory copy from ingest, not a body re-read from the engine).
    pub fn validate_block_with<T: std::borrow::Borrow<Transaction> + Sync>(
        &self,
        txs: &[T],
        view: &dyn LedgerView,
        base: &Overlay,
        verified: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<Result<(), TxError>> {
        // Large chunks batch better (n=64: ~43k sig/s per core; n=256+: ~57k+), while
        // still giving every core a share.
        let chunk = (txs.len() / rayon::current_num_threads().max(1)).clamp(64, 512);
        let stateless: Vec<Result<(), TxError>> = txs
            .par_chunks(chunk)
            .flat_map_iter(|chunk| {
                let mut checks = Vec::with_capacity(chunk.len());
                let mut msgs = Vec::with_capacity(chunk.len());
                let mut owner = Vec::with_capacity(chunk.len());
                let mut results: Vec<Result<(), TxError>> = Vec::with_capacity(chunk.len());
                for (t, tx) in chunk.iter().enumerate() {
                    let tx: &Transaction = std::borrow::Borrow::borrow(tx);
                    if verified(&tx.id) {
                        results.push(Ok(()));
                        continue;
                    }
                    results.push(tx.check_intrinsic());
                    if results[t].is_ok() {
                        let base_msg = msgs.len();
                        msgs.extend(tx.signing_messages());
                        for (c, m) in tx.signature_checks() {
                            checks.push((c, base_msg + m));
                            owner.push((t, m));
                        }
                    }
                }
                let verdicts = crypto::verify_all(&checks, &msgs);
                for (ok, (t, input)) in verdicts.into_iter().zip(owner) {
                    if !ok && results[t].is_ok() {
                        results[t] = Err(bad_signature(std::borrow::Borrow::borrow(&chunk[t]), input));
                    }
                }
                results
            })
            .collect();
        // Earlier undecided blocks' spends and outputs count; their ids are checked apart so the
        // overlay's id set holds only this block's transactions.
        let mut overlay = Overlay { ids: HashSet::new(), spent: base.spent.clone(), created: base.created.clone() };
        let mut out = Vec::with_capacity(txs.len());
        for (tx, r) in txs.iter().zip(stateless) {
            let tx: &Transaction = std::borrow::Borrow::borrow(tx);
            let r = r.and_then(|_| {
                if base.contains(&tx.id) {
                    return Err(TxError::DuplicateTransaction(format!("transaction `{}` is in an earlier undecided block", tx.id)));
                }
                self.check_stateful(tx, view, &overlay, true)
            });
            if r.is_ok() {
                overlay.add(tx);
            }
            out.push(r);
        }
        out
    }
}

/// The error for an input whose fulfillment does not verify.
pub fn bad_signature(tx: &Transaction, input: usize) -> TxError {
    TxError::InvalidSignature(format!("the fulfillment of input {input} of transaction {} does not verify", tx.id))
}
