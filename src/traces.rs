//! Optional export of spans to an OpenTelemetry collector over OTLP/HTTP (JSON encoding), and
//! the trace a job carries so that its later work joins the request that submitted it.
//!
//! With an endpoint (`--otlp-endpoint`, `HERALD_OTLP_ENDPOINT`), every span herald opens is
//! exported: the `request` span of each HTTP request, `job.submit` (planning and making the
//! job durable), then, in the same trace, `job.send` for each provider call of the job and
//! `job.receipts` for each callback request that applied receipts to it. Without one, spans
//! stay local to the log lines and nothing is exported.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once spans are exported: work that exists only for traces is skipped otherwise.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter; dropping it sends what is still buffered.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// A tracing layer exporting spans to `endpoint` (the full URL, e.g.
/// `http://127.0.0.1:4318/v1/traces`), and the exporter behind it.
pub fn otlp_layer<S>(
    endpoint: &str,
) -> anyhow::Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    TraceExport,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("herald")
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("herald");
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        TraceExport { provider },
    ))
}

/// The trace a job's sends and receipts join: the context of the span that submitted it.
#[derive(Clone, Debug, Default)]
pub struct JobTrace(Option<opentelemetry::Context>);

impl JobTrace {
    /// The current span's trace, when spans are exported and one is open.
    pub fn current() -> JobTrace {
        if !exporting() {
            return JobTrace(None);
        }
        let cx = Span::current().context();
        let valid = cx.span().span_context().is_valid();
        JobTrace(valid.then_some(cx))
    }

    /// Makes `span` a child of the job's submission, when it has a trace.
    pub fn adopt(&self, span: &Span) {
        if let Some(cx) = &self.0 {
            let _ = span.set_parent(cx.clone());
        }
    }
}
