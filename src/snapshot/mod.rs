//! The contact snapshot: compact, atomically replaced, kept fresh by upserts.
//!
//! INTERFACE STUB: the implementation lands with the snapshot work.
