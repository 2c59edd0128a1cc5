//! KEDA's external scaler (`externalscaler.ExternalScaler`, gRPC): lets Kubernetes run an
//! endpoint's workers as a Deployment that KEDA scales on sluice's own policy. The metric is
//! the number of workers [`decide`] wants for the endpoint (the same rule the local
//! autoscaler follows: scale from zero, `queue_delay` / `request_count`, min/max, idle
//! timeout), with a target of 1 per replica, so the HPA runs exactly that many Pods.
//!
//! The scaler reads the job store, so every gateway on one Redis answers alike. One part is
//! per gateway: a worker's idle clock starts when this gateway first sees it holding no job
//! and having taken none since its last look (as the local autoscaler's does), so two
//! gateways may differ by up to one poll interval on when an idle worker's timeout ends.

use crate::policy::{decide, IdleClock, QueueState, WorkerView};
use protocol::config::ScalingSettings;
use queue::ScalerStore;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The code generated from `proto/externalscaler.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("externalscaler");
}

use pb::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use pb::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The metric's name (KEDA prefixes it with `s{N}-`): desired workers of an endpoint.
pub const METRIC: &str = "sluice-desired-workers";

/// How often an open `StreamIsActive` looks again when no job arrives (a job's arrival wakes
/// it at once).
const STREAM_POLL: Duration = Duration::from_secs(1);

/// The scaler: the store, each endpoint's scaling settings, and the idle clocks (shared by
/// its clones: the streams' tasks).
#[derive(Clone)]
pub struct KedaScaler {
    store: Arc<dyn ScalerStore>,
    endpoints: Arc<HashMap<String, ScalingSettings>>,
    epoch: Instant,
    /// Per endpoint, per worker id.
    clocks: Arc<Mutex<HashMap<String, HashMap<String, IdleClock>>>>,
}

/// An endpoint's answer: the workers the policy wants, and whether the endpoint is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Workers wanted (live workers + starts - drains).
    pub workers: usize,
    /// Jobs wait or run, or workers are wanted.
    pub active: bool,
}

impl KedaScaler {
    /// A scaler over `store` for `endpoints` (name, scaling settings).
    pub fn new(store: Arc<dyn ScalerStore>, endpoints: Vec<(String, ScalingSettings)>) -> Self {
        KedaScaler {
            store,
            endpoints: Arc::new(endpoints.into_iter().collect()),
            epoch: Instant::now(),
            clocks: Arc::default(),
        }
    }

    /// The gRPC service, to add to a tonic server.
    pub fn into_service(self) -> ExternalScalerServer<KedaScaler> {
        ExternalScalerServer::new(self)
    }

    /// The endpoint's scaling settings. Errors: `NOT_FOUND` for an unknown endpoint.
    fn settings(&self, endpoint: &str) -> Result<&ScalingSettings, Status> {
        self.endpoints
            .get(endpoint)
            .ok_or_else(|| Status::not_found(format!("no endpoint `{endpoint}` on this gateway")))
    }

    /// The policy's answer for `endpoint` now. Errors: `NOT_FOUND` for an unknown endpoint,
    /// `UNAVAILABLE` when the store cannot be read.
    pub async fn desired(&self, endpoint: &str) -> Result<Desired, Status> {
        let cfg = self.settings(endpoint)?;
        let unavailable = |e: queue::QueueError| Status::unavailable(e.to_string());
        let m = self.store.metrics(endpoint).await.map_err(unavailable)?;
        let live = self.store.workers(endpoint).await.map_err(unavailable)?;
        let now = self.epoch.elapsed();
        let views: Vec<WorkerView> = {
            let mut all = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
            let clocks = all.entry(endpoint.to_string()).or_default();
            // Workers gone from the store are forgotten (this endpoint's only).
            clocks.retain(|id, _| live.iter().any(|w| &w.id == id));
            live.iter()
                .map(|w| WorkerView {
                    id: w.id.clone(),
                    state: clocks
                        .entry(w.id.clone())
                        .or_default()
                        .observe(w.jobs, w.taken, now),
                })
                .collect()
        };
        let d = decide(&QueueState::from(&m), &views, cfg, now);
        let workers = (views.len() + d.start).saturating_sub(d.drain.len());
        let busy = m.in_queue + m.in_queue_low_priority + m.in_progress > 0;
        Ok(Desired {
            workers,
            active: busy || workers > 0,
        })
    }
}

/// The endpoint a request names (`scalerMetadata.endpoint`). Errors: `INVALID_ARGUMENT`.
fn endpoint_of(r: &ScaledObjectRef) -> Result<String, Status> {
    r.scaler_metadata
        .get("endpoint")
        .filter(|e| !e.is_empty())
        .cloned()
        .ok_or_else(|| {
            Status::invalid_argument("the trigger's metadata must name the sluice `endpoint`")
        })
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for KedaScaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let d = self.desired(&endpoint_of(request.get_ref())?).await?;
        Ok(Response::new(IsActiveResponse { result: d.active }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// Sends the activity at once, then each change: woken by a job's arrival (so a cold start
    /// does not wait for KEDA's polling interval), else every second.
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<ActiveStream>, Status> {
        let endpoint = endpoint_of(request.get_ref())?;
        let first = self.desired(&endpoint).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let scaler = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            let mut next = Ok(first);
            loop {
                let send = match next {
                    Ok(d) if last != Some(d.active) => {
                        last = Some(d.active);
                        Some(Ok(IsActiveResponse { result: d.active }))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                };
                if let Some(msg) = send {
                    if tx.send(msg).await.is_err() {
                        return; // KEDA closed the stream.
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = scaler.store.wait_arrival(std::slice::from_ref(&endpoint), STREAM_POLL) => {}
                }
                next = scaler.desired(&endpoint).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as ActiveStream))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        self.settings(&endpoint_of(request.get_ref())?)?;
        // The deprecated integer fields too: KEDA before 2.13 reads only those.
        #[allow(deprecated)]
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: METRIC.into(),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let r = request.get_ref();
        let object = r
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("scaledObjectRef is required"))?;
        let d = self.desired(&endpoint_of(object)?).await?;
        #[allow(deprecated)]
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: if r.metric_name.is_empty() {
                    METRIC.into()
                } else {
                    r.metric_name.clone()
                },
                metric_value: d.workers as i64,
                metric_value_float: d.workers as f64,
            }],
        }))
    }
}

/// Serve the scaler on `addr` until `shutdown` resolves. Errors: the address cannot be bound.
pub async fn serve(
    scaler: KedaScaler,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(scaler.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::config::Scaler;
    use queue::{MemoryStore, StoreSettings, WorkerRegistry};

    fn scaling() -> ScalingSettings {
        ScalingSettings {
            scaler: Scaler::RequestCount,
            scaler_value: 1.0,
            idle_timeout_secs: 1,
            ..ScalingSettings::default()
        }
    }

    #[tokio::test]
    async fn idle_clocks_of_one_endpoint_survive_looks_at_another() {
        let store = MemoryStore::start(StoreSettings::default());
        let k = KedaScaler::new(
            store.clone(),
            vec![("a".into(), scaling()), ("b".into(), scaling())],
        );
        store.ping("a", "wa", None).await.unwrap();
        // Idle, within its timeout: still wanted.
        assert_eq!(k.desired("a").await.unwrap().workers, 1);
        for _ in 0..12 {
            // Looks at `b` between looks at `a` must not restart `a`'s idle clock.
            assert_eq!(k.desired("b").await.unwrap().workers, 0);
            store.ping("a", "wa", None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let d = k.desired("a").await.unwrap();
        assert_eq!(
            d,
            Desired {
                workers: 0,
                active: false
            },
            "idle past 1 s"
        );
        assert!(k.desired("nope").await.is_err());
    }
}
