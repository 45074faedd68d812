//! Format versions. Every stored value starts with a byte naming the version of its format (a
//! write-ahead log segment carries it in its header), and its reader refuses a version it does
//! not know with an error that names the record and the version, rather than misreading it.
//!
//! The durable layer's own versions are here; each layer above keeps the versions of its
//! stored forms in one place beside its codec ([`crate::ledger::block`],
//! [`crate::dispatch::journal::codec`], [`crate::store::EmbeddedStore`]).

/// Write-ahead log segments ([`super::wal`]), in each segment's header.
pub const WAL_SEGMENT_VERSION: u8 = 1;

/// Record-log values ([`super::records`]).
pub const RECORD_LOG_VERSION: u8 = 1;

/// A stored value this herald cannot read the format of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what}: format version {version} is not known to this herald")]
    Unknown { what: &'static str, version: u8 },
    #[error("{what}: empty, without a format version")]
    Empty { what: &'static str },
}

/// The rest of `stored`, a `what` whose first byte must be the version `known`.
pub fn check<'a>(what: &'static str, known: u8, stored: &'a [u8]) -> Result<&'a [u8], FormatError> {
    match stored.split_first() {
        Some((&version, rest)) if version == known => Ok(rest),
        Some((&version, _)) => Err(FormatError::Unknown { what, version }),
        None => Err(FormatError::Empty { what }),
    }
}

/// `body` after the version byte `version`: the stored form of a value that has no layout of
/// its own to start with one (JSON).
pub fn versioned(version: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(version);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_version_gives_the_rest_and_any_other_is_refused_by_name() {
        let stored = versioned(1, b"body");
        assert_eq!(check("thing", 1, &stored), Ok(&b"body"[..]));
        let e = check("ledger block", 1, &[7, 0, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ledger block: format version 7 is not known to this herald"
        );
        assert_eq!(
            check("thing", 1, &[]),
            Err(FormatError::Empty { what: "thing" })
        );
    }
}
