//! Library side of `loadgen`: what other parts of the workspace (tests, dashboards checks)
//! need to know about its output.

pub mod metrics;
