//! OpenTelemetry on the request path: each request's span continues the client's W3C
//! `traceparent`, and the jobs a request queues carry the trace on to their worker (see the
//! `telemetry` crate; without an exporter the spans are plain `tracing` spans).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use protocol::routes;
use tracing::Span;

/// The `traceparent` that a job queued by this request carries: the request span's context
/// when spans are exported, else the client's own header, passed through so that a custom
/// handler can still continue the client's trace. Put in the request's extensions by
/// [`job_trace`].
#[derive(Clone, Debug, Default)]
pub struct JobTrace(pub Option<String>);

fn client_traceparent(req: &Request) -> Option<&str> {
    req.headers()
        .get(telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
}

/// The span of one HTTP request (`GET /v2/{endpoint}/status/{job}`, by route template), a
/// child of the client's `traceparent` when it sent one; its `trace_id` is on every log line
/// inside it. Probes and scrapes (`/health`, `/ready`, `/metrics`, `/openapi.json`) get none:
/// a load balancer's polling would fill the traces.
pub fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    if [
        routes::HEALTH,
        routes::READY,
        routes::METRICS,
        routes::OPENAPI,
    ]
    .contains(&route)
    {
        return Span::none();
    }
    let method = req.method().as_str();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        trace_id = tracing::field::Empty,
    );
    telemetry::set_parent(&span, client_traceparent(req));
    span
}

/// Inside the request span: the [`JobTrace`] of the request.
pub async fn job_trace(mut req: Request, next: Next) -> Response {
    let trace = telemetry::traceparent(&Span::current())
        .or_else(|| client_traceparent(&req).map(str::to_string));
    req.extensions_mut().insert(JobTrace(trace));
    next.run(req).await
}
