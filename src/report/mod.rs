//! What upstream systems read about a job: its status, progress, ETA and counts, what
//! happened to each recipient, funnel reports per job and per campaign, and the A/B
//! comparison of a job's variants.

pub mod campaign;
pub mod csv_cell;
pub mod job_view;
pub mod recipients;
pub mod stats;
pub mod variants;
