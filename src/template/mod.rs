//! Templates compiled once per job and rendered per recipient; SMS part counting.
//!
//! INTERFACE STUB: the implementation lands with the template work.
