//! Reconciliation of a provider's invoice against the ledger. The invoice (bounded by the
//! upload cap) is held in memory, indexed by message id; the ledger side, which may be
//! millions of entries, is streamed past it one entry at a time, so memory grows with the
//! invoice and never with the ledger. Money stays integer micros throughout: invoice
//! decimals are parsed digit by digit, never through floating point.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::entry::{EntryKind, LedgerEntry};
use crate::domain::Currency;

/// Longest list of differences or missing items a report carries (counts are always exact).
pub const LIST_LIMIT: usize = 1000;
/// Longest list of bad invoice lines a report carries.
pub const ERROR_LIMIT: usize = 100;

/// Which id the invoice names its messages by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdColumn {
    /// herald's message id (the provider idempotency key).
    MessageId,
    /// The provider's own id, matched against entries that recorded it.
    ProviderMessageId,
}

/// Where the invoice keeps each field, read from its header.
#[derive(Debug, Clone)]
pub struct Columns {
    id: (IdColumn, usize),
    parts: Option<usize>,
    /// The charge column, and whether it is integer micros (`charge_micros`) or a decimal.
    charge: (usize, bool),
    currency: Option<usize>,
}

/// A header the invoice cannot be read with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("needs a message_id or provider_message_id column")]
    NoId,
    #[error("needs a charge or charge_micros column")]
    NoCharge,
}

impl Columns {
    /// Reads the header (case and surrounding blanks ignored; unknown columns are skipped).
    /// With both id columns, herald's `message_id` is used; with both charge columns,
    /// `charge_micros`.
    pub fn from_header<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Columns, HeaderError> {
        let names: Vec<String> = names
            .into_iter()
            .map(|n| n.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            .collect();
        let find = |n: &str| names.iter().position(|x| x == n);
        let id = match (find("message_id"), find("provider_message_id")) {
            (Some(i), _) => (IdColumn::MessageId, i),
            (None, Some(i)) => (IdColumn::ProviderMessageId, i),
            (None, None) => return Err(HeaderError::NoId),
        };
        let charge = match (find("charge_micros"), find("charge")) {
            (Some(i), _) => (i, true),
            (None, Some(i)) => (i, false),
            (None, None) => return Err(HeaderError::NoCharge),
        };
        Ok(Columns {
            id,
            parts: find("parts"),
            charge,
            currency: find("currency"),
        })
    }

    /// The id column in use.
    pub fn id_column(&self) -> IdColumn {
        self.id.0
    }
}

/// Parses a decimal amount in major units (`0.045`, `-1.5`, `12`) into exact micros. More
/// than six decimal places is an error unless the extra digits are zeros.
pub fn parse_decimal_micros(s: &str) -> Result<i64, &'static str> {
    let s = s.trim();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err("is not a number");
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err("is not a decimal number");
    }
    let (kept, extra) = frac.split_at(frac.len().min(6));
    if extra.bytes().any(|b| b != b'0') {
        return Err("has more than six decimal places");
    }
    let mut micros: i64 = 0;
    for b in whole.bytes() {
        micros = micros
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or("is too large")?;
    }
    micros = micros.checked_mul(1_000_000).ok_or("is too large")?;
    let mut scale = 100_000;
    for b in kept.bytes() {
        micros = micros
            .checked_add(i64::from(b - b'0') * scale)
            .ok_or("is too large")?;
        scale /= 10;
    }
    Ok(if negative { -micros } else { micros })
}

/// A capped list with an exact count.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub count: u64,
    pub items: Vec<T>,
}

impl<T> Listing<T> {
    fn new() -> Listing<T> {
        Listing {
            count: 0,
            items: Vec::new(),
        }
    }

    fn push(&mut self, item: T, limit: usize) {
        self.count += 1;
        if self.items.len() < limit {
            self.items.push(item);
        }
    }
}

/// A bad invoice line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

struct InvoiceLine {
    line: u64,
    id: String,
    parts: Option<u32>,
    charge_micros: i64,
    currency: Option<Currency>,
    ledger_entries: u32,
    ledger_cost_micros: i64,
    ledger_parts: u64,
    ledger_currency: Option<Currency>,
}

/// The invoice in memory, indexed by id.
pub struct Invoice {
    columns: Columns,
    lines: Vec<InvoiceLine>,
    index: HashMap<String, usize>,
    errors: Listing<LineError>,
}

impl Invoice {
    /// An empty invoice read with `columns`.
    pub fn new(columns: Columns) -> Invoice {
        Invoice {
            columns,
            lines: Vec::new(),
            index: HashMap::new(),
            errors: Listing::new(),
        }
    }

    /// Adds data line `line` (1 is the header). A bad line is recorded as an error, not added.
    pub fn push(&mut self, line: u64, fields: &[&str]) {
        match self.parse(line, fields) {
            Ok(l) => {
                self.index.insert(l.id.clone(), self.lines.len());
                self.lines.push(l);
            }
            Err(message) => self.errors.push(LineError { line, message }, ERROR_LIMIT),
        }
    }

    /// Records a line that could not even be split into fields.
    pub fn push_error(&mut self, line: u64, message: String) {
        self.errors.push(LineError { line, message }, ERROR_LIMIT);
    }

    /// The bad lines so far.
    pub fn errors(&self) -> &Listing<LineError> {
        &self.errors
    }

    fn parse(&self, line: u64, fields: &[&str]) -> Result<InvoiceLine, String> {
        let c = &self.columns;
        let field = |i: usize, name: &str| {
            fields
                .get(i)
                .map(|f| f.trim())
                .filter(|f| !f.is_empty())
                .ok_or_else(|| format!("{name} is missing"))
        };
        let id_name = match c.id.0 {
            IdColumn::MessageId => "message_id",
            IdColumn::ProviderMessageId => "provider_message_id",
        };
        let id = field(c.id.1, id_name)?.to_string();
        if let Some(&first) = self.index.get(&id) {
            let first = self.lines.get(first).map_or(0, |l| l.line);
            return Err(format!(
                "{id_name} {id} is listed twice (first on line {first})"
            ));
        }
        let charge_micros = if c.charge.1 {
            field(c.charge.0, "charge_micros")?
                .parse::<i64>()
                .map_err(|_| "charge_micros is not an integer".to_string())?
        } else {
            parse_decimal_micros(field(c.charge.0, "charge")?).map_err(|e| format!("charge {e}"))?
        };
        let parts = match c.parts {
            Some(i) => Some(
                field(i, "parts")?
                    .parse::<u32>()
                    .map_err(|_| "parts is not a whole number".to_string())?,
            ),
            None => None,
        };
        let currency = match c.currency.and_then(|i| fields.get(i)).map(|f| f.trim()) {
            Some(cur) if !cur.is_empty() => Some(
                Currency::parse(cur)
                    .ok_or_else(|| "currency is not a three-letter code".to_string())?,
            ),
            _ => None,
        };
        Ok(InvoiceLine {
            line,
            id,
            parts,
            charge_micros,
            currency,
            ledger_entries: 0,
            ledger_cost_micros: 0,
            ledger_parts: 0,
            ledger_currency: None,
        })
    }
}

/// A ledger entry with no invoice line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MissingInInvoice {
    pub seq: u64,
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    pub cost_micros: i64,
    pub currency: Currency,
}

/// An invoice line with no ledger entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MissingInLedger {
    pub line: u64,
    pub id: String,
    pub charge_micros: i64,
}

/// A matched message whose invoice charge differs from the ledger (`difference_micros` is
/// invoice minus ledger: positive when the provider charged more than herald recorded).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AmountDifference {
    pub line: u64,
    pub id: String,
    pub ledger_cost_micros: i64,
    pub invoice_charge_micros: i64,
    pub difference_micros: i64,
    pub currency: Currency,
}

/// A matched message billed for a different number of parts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartsDifference {
    pub line: u64,
    pub id: String,
    pub ledger_parts: u64,
    pub invoice_parts: u32,
}

/// A matched message invoiced in another currency than the ledger recorded (not compared).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CurrencyDifference {
    pub line: u64,
    pub id: String,
    pub ledger_currency: Currency,
    pub invoice_currency: Currency,
}

/// Matched messages and their money, per currency.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Matched {
    pub count: u64,
    pub totals: BTreeMap<String, MatchedTotal>,
}

/// One currency of [`Matched`].
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct MatchedTotal {
    pub ledger_cost_micros: i64,
    pub invoice_charge_micros: i64,
}

/// Both sides' totals in one currency (`difference_micros` = invoice − ledger).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SideTotals {
    pub ledger_entries: u64,
    pub ledger_cost_micros: i64,
    pub invoice_lines: u64,
    pub invoice_charge_micros: i64,
    pub difference_micros: i64,
}

/// The answer of a reconciliation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ReconcileReport)]
pub struct Report {
    pub matched_by: IdColumn,
    pub matched: Matched,
    pub amount_differences: Listing<AmountDifference>,
    pub parts_differences: Listing<PartsDifference>,
    pub currency_differences: Listing<CurrencyDifference>,
    pub missing_in_ledger: Listing<MissingInLedger>,
    pub missing_in_invoice: Listing<MissingInInvoice>,
    /// Per currency; invoice lines without a currency take their ledger entry's, or the
    /// ledger side's only currency, or `unspecified`.
    pub totals: BTreeMap<String, SideTotals>,
    pub errors: Listing<LineError>,
}

/// Streams ledger entries past an invoice.
pub struct Reconciler {
    invoice: Invoice,
    ledger_totals: HashMap<Currency, (u64, i64)>,
    missing_in_invoice: Listing<MissingInInvoice>,
}

impl Reconciler {
    /// Starts a reconciliation of `invoice`.
    pub fn new(invoice: Invoice) -> Reconciler {
        Reconciler {
            invoice,
            ledger_totals: HashMap::new(),
            missing_in_invoice: Listing::new(),
        }
    }

    /// Which id the invoice is matched by.
    pub fn matched_by(&self) -> IdColumn {
        self.invoice.columns.id.0
    }

    /// Takes one ledger entry (already inside the window). Answers the entry's report row
    /// when no invoice line names it.
    pub fn observe(&mut self, e: &LedgerEntry) -> Option<MissingInInvoice> {
        let n = &e.entry;
        let t = self.ledger_totals.entry(n.currency).or_default();
        t.0 += 1;
        t.1 = t.1.saturating_add(n.cost_micros.0);
        let key = match self.invoice.columns.id.0 {
            IdColumn::MessageId => Some(n.message_id.as_str()),
            IdColumn::ProviderMessageId => n.provider_message_id.as_deref(),
        };
        let slot = key
            .and_then(|k| self.invoice.index.get(k))
            .and_then(|&i| self.invoice.lines.get_mut(i));
        match slot {
            Some(line) => {
                line.ledger_entries += 1;
                line.ledger_cost_micros = line.ledger_cost_micros.saturating_add(n.cost_micros.0);
                if n.kind == EntryKind::Charge {
                    line.ledger_parts += u64::from(n.parts);
                }
                line.ledger_currency.get_or_insert(n.currency);
                None
            }
            None => {
                let missing = MissingInInvoice {
                    seq: e.seq,
                    message_id: n.message_id.clone(),
                    provider_message_id: n.provider_message_id.clone(),
                    cost_micros: n.cost_micros.0,
                    currency: n.currency,
                };
                self.missing_in_invoice.push(missing.clone(), LIST_LIMIT);
                Some(missing)
            }
        }
    }

    /// Compares every invoice line with what the ledger held for it. `limit` caps the lists
    /// (counts stay exact).
    pub fn finish(self, limit: usize) -> Report {
        let mut report = Report {
            matched_by: self.invoice.columns.id.0,
            matched: Matched::default(),
            amount_differences: Listing::new(),
            parts_differences: Listing::new(),
            currency_differences: Listing::new(),
            missing_in_ledger: Listing::new(),
            missing_in_invoice: self.missing_in_invoice,
            totals: BTreeMap::new(),
            errors: self.invoice.errors,
        };
        for (cur, (entries, cost)) in &self.ledger_totals {
            let t = report.totals.entry(cur.to_string()).or_default();
            t.ledger_entries = *entries;
            t.ledger_cost_micros = *cost;
        }
        let only_currency = (self.ledger_totals.len() == 1)
            .then(|| self.ledger_totals.keys().next().copied())
            .flatten();
        for l in self.invoice.lines {
            let currency = l.currency.or(l.ledger_currency).or(only_currency);
            let key = currency.map_or_else(|| "unspecified".to_string(), |c| c.to_string());
            let t = report.totals.entry(key.clone()).or_default();
            t.invoice_lines += 1;
            t.invoice_charge_micros = t.invoice_charge_micros.saturating_add(l.charge_micros);
            let Some(ledger_currency) = l.ledger_currency else {
                report.missing_in_ledger.push(
                    MissingInLedger {
                        line: l.line,
                        id: l.id,
                        charge_micros: l.charge_micros,
                    },
                    limit,
                );
                continue;
            };
            report.matched.count += 1;
            if let Some(parts) = l.parts {
                if u64::from(parts) != l.ledger_parts {
                    report.parts_differences.push(
                        PartsDifference {
                            line: l.line,
                            id: l.id.clone(),
                            ledger_parts: l.ledger_parts,
                            invoice_parts: parts,
                        },
                        limit,
                    );
                }
            }
            if let Some(invoice_currency) = l.currency.filter(|c| *c != ledger_currency) {
                report.currency_differences.push(
                    CurrencyDifference {
                        line: l.line,
                        id: l.id,
                        ledger_currency,
                        invoice_currency,
                    },
                    limit,
                );
                continue;
            }
            let m = report.matched.totals.entry(key).or_default();
            m.ledger_cost_micros = m.ledger_cost_micros.saturating_add(l.ledger_cost_micros);
            m.invoice_charge_micros = m.invoice_charge_micros.saturating_add(l.charge_micros);
            if l.charge_micros != l.ledger_cost_micros {
                report.amount_differences.push(
                    AmountDifference {
                        line: l.line,
                        id: l.id,
                        ledger_cost_micros: l.ledger_cost_micros,
                        invoice_charge_micros: l.charge_micros,
                        difference_micros: l.charge_micros.saturating_sub(l.ledger_cost_micros),
                        currency: ledger_currency,
                    },
                    limit,
                );
            }
        }
        for t in report.totals.values_mut() {
            t.difference_micros = t.invoice_charge_micros.saturating_sub(t.ledger_cost_micros);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_into_micros() {
        assert_eq!(parse_decimal_micros("0.045"), Ok(45_000));
        assert_eq!(parse_decimal_micros("12"), Ok(12_000_000));
        assert_eq!(parse_decimal_micros("-1.5"), Ok(-1_500_000));
        assert_eq!(parse_decimal_micros(".1"), Ok(100_000));
        assert_eq!(parse_decimal_micros("0.0450000"), Ok(45_000));
        assert_eq!(parse_decimal_micros("0.000001"), Ok(1));
        assert!(parse_decimal_micros("0.0000001").is_err());
        assert!(parse_decimal_micros("1e3").is_err());
        assert!(parse_decimal_micros("").is_err());
        assert!(parse_decimal_micros(".").is_err());
        assert!(parse_decimal_micros("99999999999999999999").is_err());
    }

    #[test]
    fn header_picks_the_id_and_charge_columns() {
        let c = Columns::from_header(["\u{feff}Provider_Message_ID", "parts", "charge"]).unwrap();
        assert_eq!(c.id_column(), IdColumn::ProviderMessageId);
        assert_eq!(
            Columns::from_header(["id", "charge"]).err(),
            Some(HeaderError::NoId)
        );
        assert_eq!(
            Columns::from_header(["message_id", "cost"]).err(),
            Some(HeaderError::NoCharge)
        );
    }
}
