//! What upstream systems read about a job: its status, progress, ETA and counts, what
//! happened to each recipient, and funnel reports per job and per campaign.

pub mod campaign;
pub mod csv_cell;
pub mod job_view;
pub mod recipients;
