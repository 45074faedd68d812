//! The finance page (`/ui/finance`): the ledger summary `GET /v1/ledger/summary` answers,
//! by month and by campaign, channel, provider and country within each currency, and the
//! by-month table as CSV (`/ui/finance/by-month.csv`).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::access::SignedIn;
use super::format;
use super::report_page::Figure;
use super::{render, Chrome, PageError};
use crate::access::Scope;
use crate::ledger::summary::{by_month_csv, Groups, LedgerFilter, Summary, TenantJobs};

use crate::app::AppState;

/// One line of a summary table.
struct Line {
    key: String,
    currency: String,
    entries: Figure,
    parts: Figure,
    cost: Figure,
}

/// A summary table.
struct Table {
    title: &'static str,
    dimension: &'static str,
    lines: Vec<Line>,
}

/// The page.
#[derive(Template)]
#[template(path = "finance.html")]
struct FinancePage {
    chrome: Chrome,
    totals: Vec<Figure>,
    /// By month first, then the other dimensions.
    tables: Vec<Table>,
}

fn table(title: &'static str, dimension: &'static str, name: &str, groups: &Groups) -> Table {
    let mut lines: Vec<Line> = groups
        .iter()
        .flat_map(|(currency, keys)| {
            keys.iter().map(move |(key, t)| {
                let m = format!("{name}.{currency}.{key}");
                Line {
                    key: key.clone(),
                    currency: currency.clone(),
                    entries: Figure {
                        metric: format!("{m}.entries"),
                        label: "Entries".into(),
                        value: t.entries.to_string(),
                    },
                    parts: Figure {
                        metric: format!("{m}.parts"),
                        label: "Parts".into(),
                        value: t.parts.to_string(),
                    },
                    cost: Figure {
                        metric: format!("{m}.cost_micros"),
                        label: "Cost".into(),
                        value: format::money(t.cost_micros),
                    },
                }
            })
        })
        .collect();
    lines.sort_by(|a, b| (&a.key, &a.currency).cmp(&(&b.key, &b.currency)));
    Table {
        title,
        dimension,
        lines,
    }
}

/// The reader's tenant's ledger summary; the ledger needs `ledger:read`.
async fn summary(state: &AppState, reader: &SignedIn) -> Result<Summary, PageError> {
    if !reader.principal.allows(Scope::LedgerRead) {
        return Err(PageError::NotAllowed("the ledger"));
    }
    let filter = LedgerFilter {
        tenant: Some(TenantJobs::of(&state.dispatcher, &reader.principal.tenant)),
        ..LedgerFilter::default()
    };
    crate::api::ledger::summarize(state, filter)
        .await
        .map_err(|_| PageError::Internal)
}

/// `GET /ui/finance`.
pub async fn page(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
) -> Result<Response, PageError> {
    let s = summary(&state, &signed_in).await?;
    let totals = s
        .totals
        .iter()
        .map(|(currency, t)| Figure {
            metric: format!("totals.{currency}.cost_micros"),
            label: currency.clone(),
            value: format::money(t.cost_micros),
        })
        .collect();
    let page = FinancePage {
        chrome: Chrome::signed_in(&state, &signed_in),
        totals,
        tables: vec![
            table("By month", "Month (UTC)", "by_month", &s.by_month),
            table("By campaign", "Campaign", "by_campaign", &s.by_campaign),
            table("By channel", "Channel", "by_channel", &s.by_channel),
            table("By provider", "Provider", "by_provider", &s.by_provider),
            table("By country", "Country", "by_country", &s.by_country),
        ],
    };
    Ok(render(&page))
}

/// `GET /ui/finance/by-month.csv`: `month,currency,entries,parts,cost_micros`.
pub async fn csv(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
) -> Result<Response, PageError> {
    let s = summary(&state, &signed_in).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"herald-ledger-by-month.csv\"",
            ),
        ],
        by_month_csv(&s),
    )
        .into_response())
}
