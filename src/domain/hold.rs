//! Why work that could run is held for now: a running job's `blocked` field and the reasons
//! `/readyz` gives for being unready use the same names.

use serde::Serialize;

/// A condition that holds dispatch (and makes the instance unready) until it clears by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The contact snapshot is older than `snapshot.max_age_seconds` (or none is loaded).
    SnapshotStale,
    /// The state backend does not answer: no consent, suppression or frequency-cap decision
    /// can be made, so nothing is sent.
    StateUnavailable,
}

impl Hold {
    /// Stable snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::SnapshotStale => "snapshot_stale",
            Hold::StateUnavailable => "state_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_as_str() {
        for h in [Hold::SnapshotStale, Hold::StateUnavailable] {
            assert_eq!(
                serde_json::to_value(h).expect("json"),
                serde_json::Value::from(h.as_str())
            );
        }
    }
}
