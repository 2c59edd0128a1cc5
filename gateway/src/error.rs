//! The gateway's one error type, its HTTP status (decided here and nowhere else), and its two
//! body shapes: OpenAI's on `/v1/*`, RunPod's on `/v2/*`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::anthropic::reply::ErrorBody as AnthropicErrorBody;
use protocol::job::JobFailure;
use protocol::openai::{ErrorBody, ErrorDetail, InvalidRequest};
use protocol::openapi::RunpodErrorBody;
use queue::QueueError;

/// Every error a gateway route can answer with; [`GatewayError::status`] gives its HTTP
/// status, [`GatewayError::openai_body`] its OpenAI error object. The message is the
/// `Display` text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// The request is not acceptable as sent: invalid parameters or body, an unreadable or
    /// non-JSON body, a prompt over the model's context. HTTP 400, OpenAI type
    /// `invalid_request_error`.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for the client.
        message: String,
        /// The offending request parameter (OpenAI's `param`), if one is to blame.
        param: Option<String>,
        /// OpenAI's machine-readable `code`, e.g. `context_length_exceeded`.
        code: Option<&'static str>,
    },
    /// The request names a model this gateway does not serve; holds the name. HTTP 404, OpenAI
    /// code `model_not_found` with `param: "model"`.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// An unknown endpoint, job (unknown, expired or purged) or route. HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// A missing or wrong client API key, or worker token. HTTP 401, OpenAI type
    /// `authentication_error` with code `invalid_api_key`.
    #[error("{0}")]
    Unauthorized(String),
    /// The request body is over the route's limit; holds the limit in bytes. HTTP 413, OpenAI
    /// code `request_too_large`.
    #[error("the request body is too large: {0} bytes at most on this route")]
    PayloadTooLarge(usize),
    /// The job is not in a state the call needs: a worker's call on a job it does not hold,
    /// or a status change the job's state forbids ([`QueueError::NotHeld`],
    /// [`QueueError::BadTransition`]). HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The job cannot be accepted now: the endpoint's queue is full or the job store is
    /// unavailable ([`QueueError::QueueFull`], [`QueueError::Unavailable`]). HTTP 503, OpenAI
    /// code `no_capacity`.
    #[error("{0}")]
    NoCapacity(String),
    /// The endpoint's queue is full ([`QueueError::QueueFull`] at a submit): HTTP 503 like
    /// [`GatewayError::NoCapacity`], with `Retry-After` (see `cold::retry_after`).
    #[error("{message}")]
    QueueFull {
        /// The store's message.
        message: String,
        /// When to come back.
        retry_after: std::time::Duration,
    },
    /// A synchronous OpenAI request got no result in time: its job TIMED_OUT (execution
    /// timeout), or was still queued or running after `request_timeout_secs`. HTTP 504,
    /// OpenAI code `timeout`.
    #[error("{0}")]
    Timeout(String),
    /// A client key's limit is reached: `what` is `requests`, `tokens` or `concurrent`
    /// requests; try again after `retry_after`. HTTP 429 with `Retry-After`, OpenAI type
    /// `what` and code `rate_limit_exceeded` (as OpenAI's own answer).
    #[error("Rate limit reached for {what} of key `{key}`: {detail}. Please try again in {}s.", retry_secs(*retry_after))]
    RateLimited {
        /// The key's name (never the key).
        key: String,
        /// Which limit: `requests`, `tokens` or `concurrent`.
        what: &'static str,
        /// The limit as configured, e.g. `limit 60 per minute`.
        detail: String,
        /// How long until a request can pass.
        retry_after: std::time::Duration,
    },
    /// Anything else: the job failed (the worker's error message), was cancelled or expired
    /// before it finished, or prompt tokens could not be counted. HTTP 500.
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// A [`GatewayError::BadRequest`] (HTTP 400) with `message` and no `param` or `code`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::BadRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 about the request parameter `param` (OpenAI's error `param`).
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A failed job's stored `error` as the request's error: a worker's [`JobFailure`] whose
    /// input was at fault is a 400, any other failure a 500 with its message (the text as
    /// stored when it is not a [`JobFailure`]).
    pub fn job_failed(error: String) -> Self {
        match JobFailure::parse(&error) {
            Some(f) if f.is_invalid_request() => GatewayError::bad_request(f.error_message),
            Some(f) => GatewayError::Internal(f.error_message),
            None => GatewayError::Internal(error),
        }
    }

    /// The error's HTTP status (decided here and nowhere else).
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::ModelNotFound(_) | GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::NoCapacity(_) | GatewayError::QueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Anthropic's `{"type": "error", "error": {type, message}}`; a refused field is named in
    /// the message, as Anthropic's errors name it.
    pub fn anthropic_body(&self) -> AnthropicErrorBody {
        let kind = match self {
            GatewayError::BadRequest { .. } | GatewayError::Conflict(_) => "invalid_request_error",
            GatewayError::ModelNotFound(_) | GatewayError::NotFound(_) => "not_found_error",
            GatewayError::Unauthorized(_) => "authentication_error",
            GatewayError::PayloadTooLarge(_) => "request_too_large",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::NoCapacity(_) | GatewayError::QueueFull { .. } => "overloaded_error",
            GatewayError::Timeout(_) => "timeout_error",
            GatewayError::Internal(_) => "api_error",
        };
        let message = match self {
            GatewayError::BadRequest {
                param: Some(p),
                message,
                ..
            } => format!("{p}: {message}"),
            e => e.to_string(),
        };
        AnthropicErrorBody::new(kind, message)
    }

    /// OpenAI's `{"error": {message, type, param, code}}`.
    pub fn openai_body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            GatewayError::BadRequest { param, code, .. } => (
                "invalid_request_error",
                param.clone(),
                code.map(str::to_string),
            ),
            GatewayError::ModelNotFound(_) => (
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_found".into()),
            ),
            GatewayError::NotFound(_) => ("invalid_request_error", None, None),
            GatewayError::Unauthorized(_) => {
                ("authentication_error", None, Some("invalid_api_key".into()))
            }
            GatewayError::PayloadTooLarge(_) => (
                "invalid_request_error",
                None,
                Some("request_too_large".into()),
            ),
            GatewayError::Conflict(_) => ("invalid_request_error", None, None),
            GatewayError::NoCapacity(_) | GatewayError::QueueFull { .. } => {
                ("server_error", None, Some("no_capacity".into()))
            }
            GatewayError::Timeout(_) => ("server_error", None, Some("timeout".into())),
            GatewayError::RateLimited { what, .. } => {
                (*what, None, Some("rate_limit_exceeded".into()))
            }
            GatewayError::Internal(_) => ("server_error", None, None),
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: kind.into(),
                param,
                code,
            },
        }
    }
}

impl From<InvalidRequest> for GatewayError {
    fn from(e: InvalidRequest) -> Self {
        GatewayError::BadRequest {
            message: e.message,
            param: e.param,
            code: e.code,
        }
    }
}

impl From<QueueError> for GatewayError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::QueueFull(_) | QueueError::Unavailable(_) => {
                GatewayError::NoCapacity(e.to_string())
            }
            QueueError::NotFound(_) => GatewayError::NotFound(e.to_string()),
            QueueError::NotHeld { .. } | QueueError::BadTransition { .. } => {
                GatewayError::Conflict(e.to_string())
            }
        }
    }
}

/// An error rendered in OpenAI's shape (routes under `/v1`).
#[derive(Debug)]
pub struct OpenAiError(pub GatewayError);

/// An error rendered in RunPod's shape, `{"error": "..."}` (routes under `/v2`).
#[derive(Debug)]
pub struct RunpodError(pub GatewayError);

/// An error rendered in Anthropic's shape, `{"type": "error", "error": {type, message}}`
/// (the Messages API).
#[derive(Debug)]
pub struct AnthropicError(pub GatewayError);

/// `?` on any error the gateway knows, in any shape.
macro_rules! wrap_from {
    ($wrapper:ident: $($err:ty),*) => {$(
        impl From<$err> for $wrapper {
            fn from(e: $err) -> Self {
                $wrapper(e.into())
            }
        }
    )*};
}
wrap_from!(OpenAiError: GatewayError, InvalidRequest, QueueError, protocol::anthropic::Refused);
wrap_from!(RunpodError: GatewayError, InvalidRequest, QueueError);
wrap_from!(AnthropicError: GatewayError, InvalidRequest, QueueError, protocol::anthropic::Refused);

/// A body the Anthropic or Responses parser refused: a 400 naming the field's path.
impl From<protocol::anthropic::Refused> for GatewayError {
    fn from(e: protocol::anthropic::Refused) -> Self {
        GatewayError::BadRequest {
            message: e.message,
            param: Some(e.field),
            code: None,
        }
    }
}

impl From<OpenAiError> for AnthropicError {
    fn from(e: OpenAiError) -> Self {
        AnthropicError(e.0)
    }
}

/// Extractor rejections before a handler picks a shape: OpenAI's, the public default.
impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        OpenAiError(self).into_response()
    }
}

impl GatewayError {
    /// `Retry-After` (whole seconds, at least 1) for an error that has one.
    fn retry_after(&self) -> Option<(axum::http::HeaderName, String)> {
        match self {
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::QueueFull { retry_after, .. } => Some((
                axum::http::header::RETRY_AFTER,
                retry_secs(*retry_after).to_string(),
            )),
            _ => None,
        }
    }
}

/// A wait in whole seconds, rounded up (at least 1): `Retry-After` and the message say the
/// same, and waiting that long is enough.
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let headers: Vec<_> = self.0.retry_after().into_iter().collect();
        (
            self.0.status(),
            headers_of(headers),
            Json(self.0.openai_body()),
        )
            .into_response()
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let headers: Vec<_> = self.0.retry_after().into_iter().collect();
        let body = Json(self.0.anthropic_body());
        (self.0.status(), headers_of(headers), body).into_response()
    }
}

impl IntoResponse for RunpodError {
    fn into_response(self) -> Response {
        let headers: Vec<_> = self.0.retry_after().into_iter().collect();
        let body = Json(RunpodErrorBody {
            error: self.0.to_string(),
        });
        (self.0.status(), headers_of(headers), body).into_response()
    }
}

fn headers_of(h: Vec<(axum::http::HeaderName, String)>) -> axum::http::HeaderMap {
    h.into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_shapes() {
        let e = GatewayError::from(InvalidRequest::new("top_p", "bad"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let b = e.openai_body();
        assert_eq!(
            (b.error.kind.as_str(), b.error.param.as_deref()),
            ("invalid_request_error", Some("top_p"))
        );
        let e = GatewayError::ModelNotFound("x".into());
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.openai_body().error.code.as_deref(),
            Some("model_not_found")
        );
        assert_eq!(
            GatewayError::from(QueueError::QueueFull("e".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            GatewayError::PayloadTooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
