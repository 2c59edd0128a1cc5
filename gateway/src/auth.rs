//! Credentials and per-key policy, as layers on route groups (see `crate::router`): client
//! keys on the public OpenAI and queue routes (who calls, and which endpoints it may see), the
//! keys' rate limits on the routes that submit work ([`limits`]), the worker token on the
//! worker protocol's routes; probes need none. A presented key is compared, by its SHA-256,
//! with every configured key in constant time.

use crate::error::{AnthropicError, GatewayError, OpenAiError, RunpodError};
use crate::AppState;
use axum::body::Body;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use protocol::keys::{ClientKey, Secret};
use protocol::GatewaySettings;
use queue::{BucketTake, RateTake};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Who is calling: a configured key (by name, never the key), or anyone when the gateway has
/// no keys. Handlers find it in the request's extensions.
#[derive(Debug)]
pub struct Caller {
    /// The key's name (`anonymous` without keys).
    pub name: String,
    key: ClientKey,
    /// The tag in the ids of this caller's jobs (see `queue::job_tenant`); `None` for an admin
    /// key and without keys: such a caller sees every job.
    pub tenant: Option<String>,
    in_flight: AtomicU32,
}

impl Caller {
    fn new(key: ClientKey) -> Self {
        let tenant = (!key.admin).then(|| tenant_tag(&key.name));
        Caller {
            name: key.name.clone(),
            key,
            tenant,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Whether the caller may use `endpoint` (others answer 404, as unknown ones do).
    pub fn allows(&self, endpoint: &str) -> bool {
        self.key.allows(endpoint)
    }

    /// Whether the caller may see a job (or batch) of `tenant`.
    pub fn owns(&self, tenant: Option<&str>) -> bool {
        self.tenant.is_none() || self.tenant.as_deref() == tenant
    }

    /// The key's tokens-per-minute limit, if any.
    pub fn tokens_per_minute(&self) -> Option<u32> {
        self.key.tokens_per_minute
    }
}

/// 8 hex digits of the SHA-256 of a key's name: its jobs' id tag.
fn tenant_tag(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    h[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The configured client keys.
pub struct Keyring {
    keys: Vec<([u8; 32], Arc<Caller>)>,
    /// The caller of a gateway without keys.
    anyone: Arc<Caller>,
}

impl Keyring {
    /// The keys of `settings` (`keys` tables and `api_keys`), secrets resolved. Errors: a key
    /// whose secret is missing (e.g. an unset `key_env`) or malformed, named.
    pub fn new(settings: &GatewaySettings) -> Result<Self, String> {
        let keys = settings
            .client_keys()
            .into_iter()
            .map(|k| {
                let hash = match k.secret()? {
                    Secret::Plain(s) => Sha256::digest(s.as_bytes()).into(),
                    Secret::Sha256(h) => h,
                };
                Ok((hash, Arc::new(Caller::new(k))))
            })
            .collect::<Result<_, String>>()?;
        Ok(Keyring {
            keys,
            anyone: Arc::new(Caller::new(ClientKey {
                name: "anonymous".into(),
                admin: true,
                ..ClientKey::flat(0, "")
            })),
        })
    }

    /// The caller presenting `headers`' key; `None` when keys are configured and it matches
    /// none.
    fn find(&self, headers: &HeaderMap) -> Option<Arc<Caller>> {
        if self.keys.is_empty() {
            return Some(self.anyone.clone());
        }
        let given: [u8; 32] = Sha256::digest(bearer(headers).unwrap_or("").as_bytes()).into();
        // Every key is compared, so the time does not tell which one matched.
        let mut found = None;
        for (hash, caller) in &self.keys {
            if bool::from(given.ct_eq(hash)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// The name of the key a job belongs to, from the tenant tag in its id (for per-key
    /// usage); jobs without a tag (an admin key's, or any on a gateway without keys) read as
    /// `untagged`.
    pub fn key_of_job(&self, job: &protocol::JobId) -> &str {
        let tag = queue::job_tenant(job);
        self.keys
            .iter()
            .find(|(_, c)| tag.is_some() && c.tenant.as_deref() == tag)
            .map_or("untagged", |(_, c)| c.name.as_str())
    }
}

impl Default for Keyring {
    /// No keys: every caller is an anonymous admin.
    fn default() -> Self {
        Keyring::new(&GatewaySettings::default()).expect("no keys to resolve")
    }
}

/// The key in `Authorization: Bearer KEY` (or the bare key, as RunPod's docs send it), else
/// in `x-api-key` (as Anthropic's clients send it).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("authorization") {
        Some(v) => Some(v.strip_prefix("Bearer ").unwrap_or(v).trim()),
        None => header("x-api-key").map(str::trim),
    }
}

fn missing_key() -> GatewayError {
    GatewayError::Unauthorized("a valid API key is required (Authorization: Bearer KEY)".into())
}

/// Identify the caller and check the route's `{endpoint}` against its scope (an endpoint
/// outside it is a 404, as an unknown one).
fn identify(gw: &AppState, params: &RawPathParams, req: &mut Request) -> Result<(), GatewayError> {
    let caller = gw.keys.find(req.headers()).ok_or_else(missing_key)?;
    if let Some((_, ep)) = params.iter().find(|(k, _)| *k == "endpoint") {
        if !caller.allows(ep) {
            return Err(GatewayError::NotFound(format!("endpoint `{ep}` not found")));
        }
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

/// Client keys on the OpenAI routes (`/v1`, `/v2/{endpoint}/openai/v1`): OpenAI's error shape.
pub async fn openai_client(
    State(gw): State<AppState>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    client(gw, Shape::OpenAi, params, req, next).await
}

/// Client keys on Anthropic's Messages routes: Anthropic's error shape.
pub async fn anthropic_client(
    State(gw): State<AppState>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    client(gw, Shape::Anthropic, params, req, next).await
}

/// Client keys on the queue routes (`/v2/{endpoint}/run`, ...): RunPod's error shape.
pub async fn queue_client(
    State(gw): State<AppState>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    client(gw, Shape::RunPod, params, req, next).await
}

async fn client(
    gw: AppState,
    shape: Shape,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    match identify(&gw, &params, &mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => shape.error(e),
    }
}

/// The worker token on the worker protocol's routes (RunPod's SDK sends it raw).
pub async fn worker_token(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    let given = bearer(req.headers()).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(gw.worker_token.as_bytes())) {
        next.run(req).await
    } else {
        close_after(
            RunpodError(GatewayError::Unauthorized(
                "invalid or missing worker token".into(),
            ))
            .into_response(),
        )
    }
}

/// Which API's error shape a refusal answers in.
#[derive(Clone, Copy)]
enum Shape {
    /// `/v1` and `/v2/{endpoint}/openai/v1`.
    OpenAi,
    /// The queue routes.
    RunPod,
    /// Anthropic's Messages routes.
    Anthropic,
}

impl Shape {
    fn error(self, e: GatewayError) -> Response {
        close_after(match self {
            Shape::OpenAi => OpenAiError(e).into_response(),
            Shape::RunPod => RunpodError(e).into_response(),
            Shape::Anthropic => AnthropicError(e).into_response(),
        })
    }
}

/// Marks a refusal sent before the request's body was read `Connection: close`. hyper closes
/// such a connection anyway when the body has not fully arrived (it will not wait to drain it),
/// and a client that reuses it races that close ("server disconnected without a response");
/// the header tells the client not to reuse it.
fn close_after(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    resp
}

/// The caller's limits on a route that submits work: requests in flight on this gateway
/// (`max_concurrent`, held until the response body ends, refused here), and a [`Quota`] in the
/// request's extensions for requests and tokens per minute, which the handler spends once the
/// request is known valid and in the key's scope, so a request refused for any reason spends
/// nothing. Every answer carries OpenAI's `x-ratelimit-*` headers for the limits the key has;
/// a refusal is a 429 with `Retry-After`.
async fn limits(gw: AppState, shape: Shape, mut req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Arc<Caller>>().cloned() else {
        return next.run(req).await;
    };
    let quota = Arc::new(Quota::new(gw, caller.clone()));
    let slot = match Slot::take(&caller) {
        Ok(s) => s,
        Err(e) => {
            crate::metrics::key_refused(&caller.name, "concurrent");
            let mut resp = shape.error(e);
            quota.write_headers(resp.headers_mut()).await;
            return resp;
        }
    };
    req.extensions_mut().insert(quota.clone());
    let mut resp = next.run(req).await;
    quota.write_headers(resp.headers_mut()).await;
    if slot.0.is_none() {
        return resp;
    }
    // The slot is freed when the body has been sent (a stream's end, or a client gone).
    let (parts, body) = resp.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// What one of a key's buckets said: the limit's name, its size per minute, the answer.
type Said = Vec<(&'static str, u32, RateTake)>;

/// A key's per-minute buckets for one request (see [`limits`]).
pub struct Quota {
    gw: AppState,
    caller: Arc<Caller>,
    /// What the buckets said when the request spent (or tried to).
    said: std::sync::Mutex<Option<Said>>,
}

impl Quota {
    fn new(gw: AppState, caller: Arc<Caller>) -> Self {
        Quota {
            gw,
            caller,
            said: std::sync::Mutex::new(None),
        }
    }

    /// The key's limits: `(what, per minute, cost of a request)`. Tokens are charged when the
    /// job ends ([`charge_tokens`]); a request needs one left.
    fn limits(&self) -> Vec<(&'static str, u32, u64)> {
        let key = &self.caller.key;
        [
            ("requests", key.requests_per_minute, 1),
            ("tokens", key.tokens_per_minute, 0),
        ]
        .into_iter()
        .filter_map(|(what, limit, cost)| Some((what, limit?, cost)))
        .collect()
    }

    /// Ask every bucket at once; `spend`: take the request's cost if all hold enough.
    async fn ask(&self, spend: bool) -> Result<Said, GatewayError> {
        let limits = self.limits();
        let names: Vec<String> = limits
            .iter()
            .map(|(what, ..)| format!("{what}:{}", self.caller.name))
            .collect();
        let buckets: Vec<BucketTake> = limits
            .iter()
            .zip(&names)
            .map(|(&(_, limit, cost), key)| BucketTake {
                key,
                capacity: limit.into(),
                cost: if spend { cost } else { 0 },
                need: u64::from(spend),
            })
            .collect();
        let takes = self.gw.store.take_tokens(&buckets).await?;
        Ok(limits
            .into_iter()
            .zip(takes)
            .map(|((what, limit, _), take)| (what, limit, take))
            .collect())
    }

    /// Spend one request of the key's per-minute limits: call it once the request is valid and
    /// in scope, before its job is queued. Errors: [`GatewayError::RateLimited`] naming the
    /// limit, with the wait after which the same request passes (nothing is spent); the store
    /// is unavailable.
    pub async fn spend(&self) -> Result<(), GatewayError> {
        if self.limits().is_empty() {
            crate::metrics::key_request(&self.caller.name);
            return Ok(());
        }
        let said = self.ask(true).await?;
        let refused = said.iter().filter(|(.., t)| !t.allowed);
        let worst = refused.max_by_key(|(.., t)| t.retry_after).copied();
        *self.said.lock().unwrap_or_else(|p| p.into_inner()) = Some(said);
        match worst {
            None => {
                crate::metrics::key_request(&self.caller.name);
                Ok(())
            }
            Some((what, limit, take)) => {
                crate::metrics::key_refused(&self.caller.name, what);
                Err(GatewayError::RateLimited {
                    key: self.caller.name.clone(),
                    what,
                    detail: format!("limit {limit} per minute"),
                    retry_after: take.retry_after,
                })
            }
        }
    }

    /// OpenAI's headers from what the buckets said, or, for a request that spent nothing (it
    /// was refused before), from a look at them that takes nothing.
    async fn write_headers(&self, h: &mut HeaderMap) {
        let said = self.said.lock().unwrap_or_else(|p| p.into_inner()).take();
        let said = match said {
            Some(s) => s,
            None if self.limits().is_empty() => return,
            None => match self.ask(false).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "rate-limit headers: the store did not answer");
                    return;
                }
            },
        };
        for (what, limit, take) in said {
            add_headers(h, what, limit, &take);
        }
    }
}

/// [`limits`] on the OpenAI routes that generate.
pub async fn openai_limits(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    limits(gw, Shape::OpenAi, req, next).await
}

/// [`limits`] on Anthropic's Messages route.
pub async fn anthropic_limits(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    limits(gw, Shape::Anthropic, req, next).await
}

/// [`limits`] on the queue routes that submit jobs.
pub async fn queue_limits(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    limits(gw, Shape::RunPod, req, next).await
}

/// One request in flight of a key with `max_concurrent`.
struct Slot(Option<Arc<Caller>>);

impl Slot {
    fn take(caller: &Arc<Caller>) -> Result<Slot, GatewayError> {
        let Some(max) = caller.key.max_concurrent else {
            return Ok(Slot(None));
        };
        if caller.in_flight.fetch_add(1, Ordering::SeqCst) >= max {
            caller.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(GatewayError::RateLimited {
                key: caller.name.clone(),
                what: "concurrent",
                detail: format!("limit {max} requests in flight"),
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(Slot(Some(caller.clone())))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// OpenAI's `x-ratelimit-limit-*`, `-remaining-*` and `-reset-*` (a duration like `6m0s`).
fn add_headers(h: &mut HeaderMap, what: &str, limit: u32, take: &RateTake) {
    let reset = take.reset.as_secs_f64();
    let reset = if reset >= 60.0 {
        format!(
            "{}m{}s",
            (reset / 60.0) as u64,
            (reset % 60.0).round() as u64
        )
    } else {
        format!("{:.3}s", reset).replace(".000s", "s")
    };
    for (name, value) in [
        (format!("x-ratelimit-limit-{what}"), limit.to_string()),
        (
            format!("x-ratelimit-remaining-{what}"),
            take.remaining.to_string(),
        ),
        (format!("x-ratelimit-reset-{what}"), reset),
    ] {
        if let (Ok(n), Ok(v)) = (
            name.parse::<axum::http::HeaderName>(),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
}

/// Charge `caller`'s tokens-per-minute bucket with the usage of `job` once it ends (OpenAI
/// routes, whose job output carries `usage`); runs beside the request.
pub fn charge_tokens(gw: &AppState, caller: &Arc<Caller>, job: protocol::JobId) {
    let Some(limit) = caller.tokens_per_minute() else {
        return;
    };
    let (gw, bucket) = (gw.clone(), format!("tokens:{}", caller.name));
    tokio::spawn(async move {
        let wait = Duration::from_secs(gw.settings.request_timeout_secs);
        let Ok(Some(view)) = gw.store.wait_final(&job, wait).await else {
            return;
        };
        let used = view
            .output
            .as_ref()
            .and_then(|o| o.pointer("/usage/total_tokens"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if used > 0 {
            let charge = BucketTake {
                key: &bucket,
                capacity: limit.into(),
                cost: used,
                need: 0,
            };
            if let Err(e) = gw.store.take_tokens(&[charge]).await {
                tracing::warn!(%job, error = %e, "could not charge tokens");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        h
    }

    #[test]
    fn keys_are_found_by_hash_and_name_their_tenant() {
        let mut s = GatewaySettings {
            api_keys: vec!["flat".into()],
            ..GatewaySettings::default()
        };
        s.keys.push(ClientKey {
            name: "team-a".into(),
            key: None,
            key_sha256: Some(hex(&Sha256::digest(b"sk-a"))),
            endpoints: vec!["echo".into()],
            admin: false,
            ..ClientKey::flat(0, "")
        });
        let ring = Keyring::new(&s).unwrap();
        let a = ring.find(&headers("sk-a")).unwrap();
        assert_eq!(a.name, "team-a");
        assert!(a.allows("echo") && !a.allows("other"));
        assert_eq!(a.tenant.as_deref().map(str::len), Some(8));
        assert!(!a.owns(None) && a.owns(a.tenant.as_deref()));
        assert_eq!(ring.find(&headers("flat")).unwrap().name, "api_keys[0]");
        assert!(ring.find(&headers("nope")).is_none());
        let open = Keyring::default().find(&HeaderMap::new()).unwrap();
        assert!(open.owns(Some("anything")) && open.tenant.is_none());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
