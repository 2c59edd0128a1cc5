//! Logs and traces for every sluice role: [`init`] installs the process's `tracing` subscriber
//! (log lines on stderr and, when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans
//! exported over OTLP), and the W3C trace context (`traceparent`) goes in and out of requests
//! and jobs with [`traceparent`] and [`set_parent`], so a job's spans on a worker join the
//! trace of the request that queued it.
//!
//! The exporter honours OpenTelemetry's variables as the SDK reads them:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `grpc`), `_HEADERS`, `_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (+ `_ARG`), `OTEL_BSP_SCHEDULE_DELAY`
//! and the other batch settings. Without an endpoint nothing is exported and no
//! OpenTelemetry layer is installed at all.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The W3C Trace Context header (and the job field) that carries a trace:
/// `00-{32 hex trace id}-{16 hex parent span id}-{2 hex flags}`.
pub const TRACEPARENT: &str = "traceparent";

/// Keeps the exporter for the process's life; dropping it flushes the spans not yet sent.
pub struct Guard(Option<SdkTracerProvider>);

impl Guard {
    /// Whether spans are exported (an OTLP endpoint is set).
    pub fn exporting(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Install the process's subscriber: log lines through `filter` on stderr (colours when
/// `ansi`), and spans over OTLP when an endpoint is configured, as `service` unless
/// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
/// Call it inside the Tokio runtime (the gRPC exporter needs one). An exporter that cannot
/// be built is reported on stderr and the process goes on without it.
pub fn init(service: &'static str, filter: EnvFilter, ansi: bool) -> Guard {
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let provider = exporter_configured()
        .then(|| provider(service))
        .and_then(|p| {
            p.map_err(|e| eprintln!("OpenTelemetry export is off: {e}"))
                .ok()
        });
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(p.tracer("sluice"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    Guard(provider)
}

fn exporter_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

fn provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

/// The `traceparent` of `span` (to store in a job or send on), or `None` when spans are not
/// exported or the span is not sampled-in context.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Make `traceparent` (a client's header, or a job's field) the parent of `span`, and record
/// the trace id in its `trace_id` field (declared `Empty`) so that log lines inside it carry
/// it. Nothing happens without an exporter or with a malformed value.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_string(), tp.to_string())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_spans_have_no_context() {
        let span = tracing::info_span!("x", trace_id = tracing::field::Empty);
        set_parent(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent(&span), None);
    }
}
