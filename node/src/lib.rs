//! Cairn node library: the ledger core (transactions, crypto-conditions, validation), the
//! embedded engine and local state, the block/vote pipeline and the HTTP API. The `cairn`
//! binary and `loadgen` are thin layers over it.

pub mod canonical;
pub mod cc;
pub mod crypto;
pub mod der;
pub mod tx;
pub mod validation;
pub mod block;
pub mod store;
pub mod engine;
pub mod devcluster;
pub mod config;
pub mod node;
pub mod api;
pub mod workload;
