//! The page of a job or a campaign, built from the same [`Report`] `GET /v1/jobs/{id}/report`
//! and `GET /v1/campaigns/{id}/report` answer (and, for a job, its [`JobView`]): nothing here
//! counts anything, it only lays the report's figures out. Every figure carries a
//! `data-metric` attribute naming it as the JSON report does (`funnel.sent`,
//! `cost.by_provider.sandbox.CNY.cost_micros`, `variant.a.click_rate`), so a reader's tools
//! and the browser test can find it.

use askama::Template;

use super::format;
use super::Chrome;
use crate::report::campaign::{CostLine, Report};
use crate::report::job_view::JobView;
use crate::report::stats::Comparison;
use crate::report::variants::VariantsReport;

/// One labelled figure.
pub struct Figure {
    pub metric: String,
    pub label: String,
    pub value: String,
}

impl Figure {
    fn new(metric: impl Into<String>, label: impl Into<String>, value: impl ToString) -> Figure {
        Figure {
            metric: metric.into(),
            label: label.into(),
            value: value.to_string(),
        }
    }
}

/// A funnel step with its bar (its share of the audience).
pub struct Step {
    pub figure: Figure,
    pub share: u32,
}

/// One line of a cost table.
pub struct CostRow {
    pub key: String,
    pub currency: String,
    pub messages: Figure,
    pub parts: Figure,
    pub cost: Figure,
    pub share: u32,
}

/// Cost by one dimension.
pub struct CostTable {
    pub title: &'static str,
    pub dimension: &'static str,
    pub rows: Vec<CostRow>,
}

/// A row of the side-by-side variants table: one figure per variant.
pub struct VariantRow {
    pub label: &'static str,
    pub cells: Vec<Figure>,
}

/// The variants side by side.
pub struct VariantsTable {
    pub names: Vec<String>,
    pub rows: Vec<VariantRow>,
    pub holdout: Vec<Figure>,
    pub best_by_click_rate: String,
    pub best_by_open_rate: String,
    pub rollout: Vec<Figure>,
    pub rollout_why: Option<String>,
}

/// Facts about a job shown above its report.
pub struct JobFacts {
    pub campaign_id: String,
    pub facts: Vec<Figure>,
}

/// A tracked link's clicks.
pub struct LinkRow {
    pub job: String,
    pub url: String,
    pub clicks: Figure,
}

/// A minute of the series, also shown as a table under the chart.
pub struct MinuteRow {
    pub minute: String,
    pub figures: Vec<Figure>,
}

/// The page.
#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    pub chrome: Chrome,
    pub kind: &'static str,
    pub id: String,
    pub job: Option<JobFacts>,
    pub campaign_jobs: Vec<String>,
    pub generated_at: String,
    pub funnel: Vec<Step>,
    pub outcomes: Vec<Figure>,
    pub rates: Vec<Figure>,
    pub rejected: Vec<Figure>,
    pub cost_totals: Vec<Figure>,
    pub cost_tables: Vec<CostTable>,
    pub variants: Option<VariantsTable>,
    pub links: Vec<LinkRow>,
    pub minutes: Vec<MinuteRow>,
    /// The series for the chart, JSON with `<` escaped so it cannot close its script element.
    pub series_json: String,
}

impl ReportPage {
    /// Lays out `report`; `job` is the job's view on a job page.
    pub fn new(chrome: Chrome, report: &Report, job: Option<&JobView<'_>>) -> ReportPage {
        let f = &report.funnel;
        let audience = f.audience;
        let step = |metric: &str, label: &str, n: u64| Step {
            figure: Figure::new(metric, label, n),
            share: format::bar(n, audience),
        };
        let funnel = vec![
            step("funnel.audience", "Audience", f.audience),
            step("funnel.rejected.total", "Rejected", f.rejected.total),
            step("funnel.sent", "Sent", f.sent),
            step("funnel.delivered", "Delivered", f.delivered),
            step(
                "funnel.opened.unique_contacts",
                "Opened",
                f.opened.unique_contacts,
            ),
            step(
                "funnel.clicked.unique_contacts",
                "Clicked",
                f.clicked.unique_contacts,
            ),
            step(
                "funnel.opted_out_after_send",
                "Opted out",
                f.opted_out_after_send,
            ),
        ];
        let outcomes = [
            ("funnel.deferred", "Deferred", f.deferred),
            ("funnel.pending", "Pending", f.pending),
            ("funnel.cancelled", "Cancelled", f.cancelled),
            ("funnel.failed", "Failed", f.failed),
            ("funnel.undelivered", "Undelivered", f.undelivered),
            ("funnel.expired", "Expired", f.expired),
            ("funnel.unknown", "No receipt", f.unknown),
            (
                "funnel.awaiting_receipt",
                "Awaiting receipt",
                f.awaiting_receipt,
            ),
            ("funnel.opened.total", "Opens (events)", f.opened.total),
            ("funnel.clicked.total", "Clicks (events)", f.clicked.total),
        ]
        .into_iter()
        .map(|(m, l, n)| Figure::new(m, l, n))
        .collect();
        let r = &report.rates;
        let rates = [
            (
                "rates.sent_of_audience",
                "Sent of audience",
                r.sent_of_audience,
            ),
            (
                "rates.delivered_of_sent",
                "Delivered of sent",
                r.delivered_of_sent,
            ),
            (
                "rates.opened_of_delivered",
                "Opened of delivered",
                r.opened_of_delivered,
            ),
            (
                "rates.clicked_of_delivered",
                "Clicked of delivered",
                r.clicked_of_delivered,
            ),
            (
                "rates.clicked_of_opened",
                "Clicked of opened",
                r.clicked_of_opened,
            ),
            (
                "rates.opted_out_of_sent",
                "Opted out of sent",
                r.opted_out_of_sent,
            ),
        ]
        .into_iter()
        .map(|(m, l, v)| Figure::new(m, l, format::percent(v)))
        .collect();
        let rejected = f
            .rejected
            .by_reason
            .iter()
            .map(|(reason, n)| {
                Figure::new(format!("funnel.rejected.by_reason.{reason}"), *reason, n)
            })
            .collect();
        let cost_totals = report
            .cost
            .total_micros
            .iter()
            .map(|(currency, micros)| {
                Figure::new(
                    format!("cost.total_micros.{currency}"),
                    currency.clone(),
                    format::money(*micros),
                )
            })
            .collect();
        let cost_tables = vec![
            cost_table(
                "By channel",
                "Channel",
                "by_channel",
                &report.cost.by_channel,
            ),
            cost_table(
                "By provider",
                "Provider",
                "by_provider",
                &report.cost.by_provider,
            ),
            cost_table(
                "By country",
                "Country",
                "by_country",
                &report.cost.by_country,
            ),
        ];
        let links = report
            .links
            .iter()
            .map(|l| LinkRow {
                job: l.job.to_string(),
                url: l.url.clone(),
                clicks: Figure::new(format!("links.{}.{}", l.job, l.index), "Clicks", l.clicks),
            })
            .collect();
        let minutes = report
            .series
            .iter()
            .map(|p| {
                let minute = p.minute.format("%Y-%m-%d %H:%M").to_string();
                let key = p.minute.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let c = &p.counts;
                MinuteRow {
                    figures: [
                        ("sent", c.sent),
                        ("delivered", c.delivered),
                        ("opened", c.opened),
                        ("clicked", c.clicked),
                    ]
                    .into_iter()
                    .map(|(name, n)| Figure::new(format!("series.{key}.{name}"), name, n))
                    .collect(),
                    minute,
                }
            })
            .collect();
        ReportPage {
            chrome,
            kind: report.scope.kind,
            id: report.scope.id.clone(),
            job: job.map(job_facts),
            campaign_jobs: match report.scope.kind {
                "campaign" => report.scope.jobs.iter().map(|j| j.to_string()).collect(),
                _ => Vec::new(),
            },
            generated_at: report
                .generated_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            funnel,
            outcomes,
            rates,
            rejected,
            cost_totals,
            cost_tables,
            variants: report.variants.as_ref().map(variants_table),
            links,
            minutes,
            series_json: series_json(report),
        }
    }
}

fn cost_table(
    title: &'static str,
    dimension: &'static str,
    name: &str,
    lines: &[CostLine],
) -> CostTable {
    let max = lines
        .iter()
        .map(|l| l.cost_micros.max(0))
        .max()
        .unwrap_or(0) as u64;
    CostTable {
        title,
        dimension,
        rows: lines
            .iter()
            .map(|l| {
                let m = format!("cost.{name}.{}.{}", l.key, l.currency);
                CostRow {
                    key: l.key.clone(),
                    currency: l.currency.clone(),
                    messages: Figure::new(format!("{m}.messages"), "Messages", l.messages),
                    parts: Figure::new(format!("{m}.parts"), "Parts", l.parts),
                    cost: Figure::new(
                        format!("{m}.cost_micros"),
                        "Cost",
                        format::money(l.cost_micros),
                    ),
                    share: format::bar(l.cost_micros.max(0) as u64, max),
                }
            })
            .collect(),
    }
}

fn job_facts(v: &JobView<'_>) -> JobFacts {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "–".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    };
    let mut facts = vec![
        Figure::new("job.status", "Status", v.status.as_str()),
        Figure::new("job.channel", "Channel", v.channel.as_str()),
        Figure::new("job.purpose", "Purpose", v.purpose.as_str()),
        Figure::new("job.provider", "Provider", v.provider),
        Figure::new(
            "job.progress",
            "Progress",
            format::percent(Some(v.progress)),
        ),
        Figure::new("job.created_at", "Created", time(Some(v.created_at))),
        Figure::new("job.started_at", "Started", time(v.started_at)),
        Figure::new("job.finished_at", "Finished", time(v.finished_at)),
    ];
    if let Some(reason) = v.blocked {
        facts.push(Figure::new("job.blocked", "Held", reason));
    }
    JobFacts {
        campaign_id: v.campaign_id.to_string(),
        facts,
    }
}

fn variants_table(r: &VariantsReport) -> VariantsTable {
    let names = r.variants.iter().map(|v| v.name.clone()).collect();
    let row = |label: &'static str, field: &str, value: &dyn Fn(usize) -> String| VariantRow {
        label,
        cells: r
            .variants
            .iter()
            .enumerate()
            .map(|(k, v)| Figure::new(format!("variant.{}.{field}", v.name), label, value(k)))
            .collect(),
    };
    let v = &r.variants;
    let vs = |c: Option<Comparison>, best: bool, f: fn(&Comparison) -> String| match c {
        Some(c) => f(&c),
        None if best => "best".to_string(),
        None => "–".to_string(),
    };
    let best_click = |k: usize| r.best_by_click_rate.as_deref() == Some(v[k].name.as_str());
    let best_open = |k: usize| r.best_by_open_rate.as_deref() == Some(v[k].name.as_str());
    let rows = vec![
        row("Weight", "weight", &|k| v[k].weight.to_string()),
        row("Assigned", "assigned", &|k| v[k].assigned.to_string()),
        row("Rejected", "rejected", &|k| v[k].rejected.to_string()),
        row("Sent", "sent", &|k| v[k].sent.to_string()),
        row("Delivered", "delivered", &|k| v[k].delivered.to_string()),
        row("Opened", "opened", &|k| v[k].opened.to_string()),
        row("Clicked", "clicked", &|k| v[k].clicked.to_string()),
        row("Opted out", "opted_out", &|k| v[k].opted_out.to_string()),
        row("Cost", "cost_micros", &|k| format::money(v[k].cost_micros)),
        row("Open rate", "open_rate", &|k| {
            format::percent(v[k].open_rate)
        }),
        row("Click rate", "click_rate", &|k| {
            format::percent(v[k].click_rate)
        }),
        row(
            "Click rate vs best",
            "click_rate_vs_best.difference",
            &|k| {
                vs(v[k].click_rate_vs_best, best_click(k), |c| {
                    format::points(c.difference)
                })
            },
        ),
        row("95% interval", "click_rate_vs_best.ci95", &|k| {
            vs(v[k].click_rate_vs_best, best_click(k), |c| {
                format::interval(c.ci95_low, c.ci95_high)
            })
        }),
        row("p-value", "click_rate_vs_best.p_value", &|k| {
            vs(v[k].click_rate_vs_best, best_click(k), |c| {
                format::p_value(c.p_value)
            })
        }),
        row("Open rate vs best", "open_rate_vs_best.difference", &|k| {
            vs(v[k].open_rate_vs_best, best_open(k), |c| {
                format::points(c.difference)
            })
        }),
        row("95% interval", "open_rate_vs_best.ci95", &|k| {
            vs(v[k].open_rate_vs_best, best_open(k), |c| {
                format::interval(c.ci95_low, c.ci95_high)
            })
        }),
        row("p-value", "open_rate_vs_best.p_value", &|k| {
            vs(v[k].open_rate_vs_best, best_open(k), |c| {
                format::p_value(c.p_value)
            })
        }),
    ];
    let holdout = vec![
        Figure::new(
            "holdout.share",
            "Share asked",
            format::percent(Some(r.holdout.share)),
        ),
        Figure::new("holdout.assigned", "Assigned", r.holdout.assigned),
        Figure::new("holdout.held_out", "Held out (control)", r.holdout.held_out),
    ];
    let (rollout, rollout_why) = match &r.rollout {
        Some(ro) => {
            let mut figures = vec![
                Figure::new(
                    "rollout.test_share",
                    "Test share",
                    format::percent(Some(ro.test_share)),
                ),
                Figure::new(
                    "rollout.metric",
                    "Decided on",
                    ro.metric.as_str().replace('_', " "),
                ),
                Figure::new(
                    "rollout.decide_at",
                    "Decides at",
                    ro.decide_at.format("%Y-%m-%d %H:%M UTC"),
                ),
                Figure::new("rollout.waiting", "Waiting for the winner", ro.waiting),
            ];
            if let Some(w) = &ro.winner {
                figures.push(Figure::new("rollout.winner", "Winner", w));
            }
            (figures, ro.why.clone())
        }
        None => (Vec::new(), None),
    };
    VariantsTable {
        names,
        rows,
        holdout,
        best_by_click_rate: r.best_by_click_rate.clone().unwrap_or_else(|| "–".into()),
        best_by_open_rate: r.best_by_open_rate.clone().unwrap_or_else(|| "–".into()),
        rollout,
        rollout_why,
    }
}

/// `{"t": [unix seconds], "sent": [...], "delivered": [...], "opened": [...], "clicked": [...]}`.
fn series_json(report: &Report) -> String {
    let s = &report.series;
    let json = serde_json::json!({
        "t": s.iter().map(|p| p.minute.timestamp()).collect::<Vec<_>>(),
        "sent": s.iter().map(|p| p.counts.sent).collect::<Vec<_>>(),
        "delivered": s.iter().map(|p| p.counts.delivered).collect::<Vec<_>>(),
        "opened": s.iter().map(|p| p.counts.opened).collect::<Vec<_>>(),
        "clicked": s.iter().map(|p| p.counts.clicked).collect::<Vec<_>>(),
    });
    json.to_string().replace('<', "\\u003c")
}
