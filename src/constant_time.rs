//! Comparing secrets (keys, tokens, signatures) without leaking where they differ.

/// Equality whose time depends only on the lengths, not on where the inputs differ.
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
