//! The Cairn ledger core, with no I/O: everything that must agree byte for byte with the
//! official BigchainDB driver and the Python `cryptoconditions` package (canonical JSON, DER,
//! crypto-conditions, keys, the 2.0 transaction model and builder), the validation rules, and
//! the block and vote models. The node, loadgen and tests share it; it knows nothing of
//! stores, engines or HTTP. (One exception, [`ports`]: choosing a free loopback port, which
//! every tool that starts local servers needs.)

pub mod block;
pub mod canonical;
pub mod cc;
pub mod crypto;
pub mod der;
pub mod ports;
pub mod statsd;
pub mod tx;
pub mod validation;
pub mod workload;
