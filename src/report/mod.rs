//! What upstream systems read about a job: its status, progress, ETA and counts, and what
//! happened to each recipient.

pub mod job_view;
pub mod recipients;
