//! Audience segment expressions over contact tags and attributes.
//!
//! INTERFACE STUB: the implementation lands with the segment work.

/// What a segment expression can ask of a contact.
pub trait SegmentSubject {
    /// Whether the contact carries `tag`.
    fn has_tag(&self, tag: &str) -> bool;
    /// A template attribute's value, if the contact has it.
    fn attribute(&self, name: &str) -> Option<&str>;
}
