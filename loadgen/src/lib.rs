//! `loadgen` as a library: one measured run (`point`), node-count sweeps (`sweep`) over fresh
//! federations (`fleet`) with fault schedules (`faults`) and a correctness gate (`gate`), the
//! results directory and report (`report`, `plot`), `compare`, and the StatsD catalogue
//! (`metrics`) the monitor's dashboards are checked against.

pub mod compare;
pub mod faults;
pub mod fleet;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod plot;
pub mod point;
pub mod progress;
pub mod provenance;
pub mod report;
pub mod sweep;
pub mod workload;
