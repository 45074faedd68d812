//! CSV cells that stay data when finance opens an export in a spreadsheet.
//!
//! Campaign ids, invoice ids, link targets and other upstream text end up in the CSV files
//! herald writes (ledger export, reconciliation, job and campaign reports). A spreadsheet
//! runs a cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before
//! one) as a formula, which can exfiltrate data or start programs. Every text cell goes
//! through [`text`], which prefixes such a cell with `'` (the OWASP advice), so it shows as
//! written and never runs. Numbers are written as they are and never go through it: a
//! negative amount stays `-5000`, a number a spreadsheet can add up.

use std::borrow::Cow;

/// The first characters that make a spreadsheet read a cell as a formula.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell as it is safe to write: unchanged, or prefixed with `'` when it would start a
/// formula.
pub fn text(s: &str) -> Cow<'_, str> {
    if s.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn cells_that_start_a_formula_are_prefixed() {
        for s in ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(text(s), format!("'{s}"));
        }
    }

    #[test]
    fn other_cells_are_unchanged() {
        for s in ["", "camp-1", "1+1", "a=b", "'=1", " =1", "长"] {
            assert_eq!(text(s), s);
        }
    }
}
