//! The HTTP server under the router: hyper's HTTP/1 with limits on the wire, so that slow or
//! greedy clients cannot hold the gateway. A connection over `max_connections` is closed at
//! once; headers must arrive within `header_read_timeout_secs` (also how long an idle
//! keep-alive connection may wait for its next request) and fit `max_header_bytes` and
//! `max_headers` (else 431); request bodies must keep arriving (`body_read_timeout_secs`
//! between frames, see `crate::router`). Shutdown is graceful: open connections finish their
//! requests.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use protocol::GatewaySettings;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Serve `router` on `listener` with the wire limits of `settings` until `shutdown`
/// resolves, then wait for open connections to end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &GatewaySettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(settings.header_read_timeout_secs))
        .max_header_size(settings.max_header_bytes)
        .max_headers(settings.max_headers);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = settings.max_connections,
                "connection refused: max_connections reached"
            );
            continue;
        };
        // Streamed answers are many small writes: without TCP_NODELAY, Nagle's algorithm holds
        // each one until the client's delayed ACK (~40 ms), which was most of a warm TTFT.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
