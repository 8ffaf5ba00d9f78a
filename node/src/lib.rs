//! Cairn node library: the node runtime around the ledger core (`cairn-ledger`): the engines
//! and local state, the block/vote pipeline and the HTTP API. The ledger modules are
//! re-exported here so `cairn::tx`, `cairn::crypto`, … keep working for the node's code and
//! tests; `loadgen` depends on `cairn-ledger` alone.

pub use ledger::{block, canonical, cc, crypto, der, ports, statsd, tx, validation, workload};

pub mod store;
pub mod engine;
pub mod devcluster;
pub mod federation;
pub mod config;
pub mod metrics;
pub mod node;
pub mod api;
