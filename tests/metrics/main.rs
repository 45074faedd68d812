//! The `/metrics` output and the Grafana dashboards, checked against one gateway that ran one
//! small job. The metrics recorder is process-wide, so these run in a binary of their own
//! where that gateway is the only one that sends.

mod grafana_dashboards;
mod metrics;
