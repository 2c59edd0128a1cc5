//! The OpenAPI 3.1 document of the public API, served at `GET /openapi.json`: every client
//! route (probes, OpenAI's, the RunPod-style queue), built from the protocol types' schemas
//! (`utoipa`) and the route constants of [`protocol::routes`]. The worker protocol is not in
//! it (workers are sluice's or RunPod's SDK, not API clients).
//!
//! Routes are data here: one [`Op`] per operation names its path, group, body and answer;
//! each group adds its error answers and credentials, as the router's route groups add
//! their policy. The document is built once per gateway, with the served model and endpoint
//! names as the `model` and `{endpoint}` enums, so a client (or a fuzzer) sees what exists.

use crate::batch::ListQuery;
use crate::queue_api::WaitQuery;
use crate::responses_api::ItemsQuery;
use crate::tokenize::InfoQuery;
use protocol::anthropic::reply::{ErrorBody as AnthropicErrorBody, MessageReply, StreamedEvent};
use protocol::anthropic::{CountTokensRequest, MessagesRequest, TokenCount};
use protocol::health::{EndpointHealth, Liveness, Readiness};
use protocol::job::{JobAccepted, JobView, Purged, StreamView};
use protocol::openai::batch::{Batch, CreateBatch, FileDeleted, FileObject, List};
use protocol::openai::embeddings::{EmbeddingRequest, EmbeddingResponse};
use protocol::openai::response::{ChatCompletion, ChatCompletionChunk, TextCompletion};
use protocol::openai::tokenize::{
    DetokenizeBody, DetokenizeResponse, TokenizeBody, TokenizeResponse, TokenizerInfo,
};
use protocol::openai::{ErrorBody, ModelList};
use protocol::openapi::{
    ChatCompletionBody, CompletionBody, FileUpload, RunRequest, RunpodErrorBody,
};
use protocol::responses::reply::{InputItem, ResponseDeleted, ResponseObject};
use protocol::responses::ResponsesRequest;
use protocol::routes::{self, queue};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, OneOfBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, Content, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Paths, RefOr,
    Required, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoParams, ToSchema};

/// Who may call a route and how its errors look (the router's route groups).
#[derive(Clone, Copy, PartialEq)]
enum Group {
    /// No credentials, no errors but 503 from `/ready`.
    Probe,
    /// Client keys; OpenAI's error object.
    OpenAi,
    /// Client keys; RunPod's `{"error": "..."}`.
    Queue,
    /// Client keys (also as `x-api-key`); Anthropic's error object.
    Anthropic,
}

/// Adds a schema (and the named schemas it refers to) to the components and gives a
/// reference to it.
type SchemaFn = fn(&mut Components) -> RefOr<Schema>;

fn schema<T: ToSchema>(c: &mut Components) -> RefOr<Schema> {
    let schema = inline::<T>(c);
    c.schemas.insert(T::name().into_owned(), schema);
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

/// The schema of a generic type (`List<T>`, the completion envelopes), inline: utoipa names
/// every instance of a generic alike.
fn inline<T: ToSchema>(c: &mut Components) -> RefOr<Schema> {
    let mut parts = Vec::new();
    T::schemas(&mut parts);
    c.schemas.extend(parts);
    T::schema()
}

/// What a route answers with on success.
#[derive(Clone, Copy)]
enum Reply {
    /// A JSON object.
    Json(SchemaFn),
    /// A JSON object, or server-sent events of chunks with `stream: true`.
    /// (the completion, one streamed chunk).
    Generate(SchemaFn, SchemaFn),
    /// Anthropic's message, or its named events with `stream: true`.
    Message,
    /// The Responses API's object, or its `response.*` events with `stream: true`.
    Response,
    /// The stored bytes (a file's content).
    Bytes,
    /// Prometheus' text format.
    Metrics,
    /// `/ready`: the readiness object, with 200 or 503.
    Readiness,
}

/// One documented operation.
struct Op {
    methods: &'static [HttpMethod],
    path: &'static str,
    group: Group,
    summary: &'static str,
    body: Option<(&'static str, SchemaFn)>,
    reply: Reply,
    query: fn() -> Vec<Parameter>,
    /// The path parameter (`job`, `file_id`, `batch_id`) that the `id` of this operation's
    /// answer fills: OpenAPI links to the operations on the object it creates, which is how a
    /// client (or schemathesis' stateful phase) follows a job from `run` to `status`.
    creates: Option<&'static str>,
}

const JSON: &str = "application/json";
const GET: &[HttpMethod] = &[HttpMethod::Get];
const POST: &[HttpMethod] = &[HttpMethod::Post];
const GET_POST: &[HttpMethod] = &[HttpMethod::Get, HttpMethod::Post];

fn no_query() -> Vec<Parameter> {
    Vec::new()
}
fn wait_query() -> Vec<Parameter> {
    WaitQuery::into_params(|| Some(ParameterIn::Query))
}
fn list_query() -> Vec<Parameter> {
    ListQuery::into_params(|| Some(ParameterIn::Query))
}
fn items_query() -> Vec<Parameter> {
    ItemsQuery::into_params(|| Some(ParameterIn::Query))
}
fn model_query() -> Vec<Parameter> {
    InfoQuery::into_params(|| Some(ParameterIn::Query))
}

impl Op {
    /// An operation without query parameters that creates nothing.
    const fn new(
        methods: &'static [HttpMethod],
        path: &'static str,
        group: Group,
        summary: &'static str,
        body: Option<(&'static str, SchemaFn)>,
        reply: Reply,
    ) -> Op {
        Op {
            methods,
            path,
            group,
            summary,
            body,
            reply,
            query: no_query,
            creates: None,
        }
    }

    /// With query parameters.
    const fn query(self, query: fn() -> Vec<Parameter>) -> Op {
        Op { query, ..self }
    }

    /// Its answer's `id` fills the path parameter `param` (see [`Op::creates`]).
    const fn creates(self, param: &'static str) -> Op {
        Op {
            creates: Some(param),
            ..self
        }
    }
}

const CHAT: Option<(&str, SchemaFn)> = Some((JSON, schema::<ChatCompletionBody>));
const TEXT: Option<(&str, SchemaFn)> = Some((JSON, schema::<CompletionBody>));
const RUN: Option<(&str, SchemaFn)> = Some((JSON, schema::<RunRequest>));
const UPLOAD: Option<(&str, SchemaFn)> = Some(("multipart/form-data", schema::<FileUpload>));
const CREATE_BATCH: Option<(&str, SchemaFn)> = Some((JSON, schema::<CreateBatch>));
const EMBED: Option<(&str, SchemaFn)> = Some((JSON, schema::<EmbeddingRequest>));
const RESPONSES: Option<(&str, SchemaFn)> = Some((JSON, schema::<ResponsesRequest>));
const MESSAGES: Option<(&str, SchemaFn)> = Some((JSON, schema::<MessagesRequest>));
const COUNT_TOKENS: Option<(&str, SchemaFn)> = Some((JSON, schema::<CountTokensRequest>));
const TOKENIZE: Option<(&str, SchemaFn)> = Some((JSON, schema::<TokenizeBody>));
const DETOKENIZE: Option<(&str, SchemaFn)> = Some((JSON, schema::<DetokenizeBody>));
const CHAT_REPLY: Reply = Reply::Generate(inline::<ChatCompletion>, inline::<ChatCompletionChunk>);
const TEXT_REPLY: Reply = Reply::Generate(inline::<TextCompletion>, inline::<TextCompletion>);

/// Every documented operation, in the order of the README: a table, one operation a line.
#[rustfmt::skip]
const OPERATIONS: &[Op] = {
    use Group::{Anthropic, OpenAi, Probe, Queue};
    use Reply::{Bytes, Json, Metrics, Readiness};
    &[
        Op::new(GET, routes::HEALTH, Probe, "Liveness", None, Json(schema::<Liveness>)),
        Op::new(GET, routes::READY, Probe, "Readiness: 503 until every endpoint has its min_workers", None, Readiness),
        Op::new(GET, routes::METRICS, Probe, "Prometheus metrics (text format)", None, Metrics),
        Op::new(GET, routes::MODELS, OpenAi, "The served models", None, Json(schema::<ModelList>)),
        Op::new(POST, routes::CHAT_COMPLETIONS, OpenAi, "OpenAI chat completions", CHAT, CHAT_REPLY),
        Op::new(POST, routes::COMPLETIONS, OpenAi, "OpenAI text completions", TEXT, TEXT_REPLY),
        Op::new(POST, routes::EMBEDDINGS, OpenAi, "OpenAI embeddings (llama.cpp backend, mean pooling, unit vectors)", EMBED, Json(schema::<EmbeddingResponse>)),
        Op::new(POST, routes::RESPONSES, OpenAi, "OpenAI's Responses API (a chat, translated; kept unless `store: false`)", RESPONSES, Reply::Response).creates("response_id"),
        Op::new(GET, routes::RESPONSE, OpenAi, "A stored response", None, Json(schema::<ResponseObject>)),
        Op::new(&[HttpMethod::Delete], routes::RESPONSE, OpenAi, "Delete a stored response", None, Json(schema::<ResponseDeleted>)),
        Op::new(GET, routes::RESPONSE_INPUT_ITEMS, OpenAi, "A stored response's input items, the last first unless `order=asc`", None, Json(inline::<List<InputItem>>)).query(items_query),
        Op::new(POST, routes::MESSAGES, Anthropic, "Anthropic's Messages API (a chat, translated)", MESSAGES, Reply::Message),
        Op::new(POST, routes::MESSAGES_COUNT_TOKENS, Anthropic, "Anthropic's token counter: a message's input tokens", COUNT_TOKENS, Json(schema::<TokenCount>)),
        Op::new(POST, routes::TOKENIZE, OpenAi, "vLLM's tokenizer: a prompt's or messages' token ids", TOKENIZE, Json(schema::<TokenizeResponse>)),
        Op::new(POST, routes::DETOKENIZE, OpenAi, "vLLM's detokenizer: the text of token ids", DETOKENIZE, Json(schema::<DetokenizeResponse>)),
        Op::new(GET, routes::TOKENIZER_INFO, OpenAi, "vLLM's tokenizer description: special tokens and chat template", None, Json(schema::<TokenizerInfo>)).query(model_query),
        Op::new(POST, routes::FILES, OpenAi, "Upload a batch input file (checked line by line)", UPLOAD, Json(schema::<FileObject>)).creates("file_id"),
        Op::new(GET, routes::FILES, OpenAi, "The caller's files, newest first", None, Json(inline::<List<FileObject>>)).query(list_query),
        Op::new(GET, routes::FILE, OpenAi, "A file's object", None, Json(schema::<FileObject>)),
        Op::new(&[HttpMethod::Delete], routes::FILE, OpenAi, "Delete a file", None, Json(schema::<FileDeleted>)),
        Op::new(GET, routes::FILE_CONTENT, OpenAi, "A file's content", None, Bytes),
        Op::new(POST, routes::BATCHES, OpenAi, "Create a batch", CREATE_BATCH, Json(schema::<Batch>)).creates("batch_id"),
        Op::new(GET, routes::BATCHES, OpenAi, "The caller's batches, newest first", None, Json(inline::<List<Batch>>)).query(list_query),
        Op::new(GET, routes::BATCH, OpenAi, "A batch's object", None, Json(schema::<Batch>)),
        Op::new(POST, routes::BATCH_CANCEL, OpenAi, "Cancel a batch", None, Json(schema::<Batch>)),
        Op::new(POST, queue::RUN, Queue, "Queue a job", RUN, Json(schema::<JobAccepted>)).creates("job"),
        Op::new(POST, queue::RUNSYNC, Queue, "Queue a job and wait up to `wait` ms for it to end", RUN, Json(schema::<JobView>)).query(wait_query).creates("job"),
        Op::new(GET_POST, queue::STATUS, Queue, "A job's status", None, Json(schema::<JobView>)),
        Op::new(GET_POST, queue::STATUS_SYNC, Queue, "A job's status once it ends, or after `wait` ms", None, Json(schema::<JobView>)).query(wait_query),
        Op::new(GET_POST, queue::STREAM, Queue, "A job's stream chunks not read before (long-poll)", None, Json(schema::<StreamView>)).query(wait_query),
        Op::new(POST, queue::CANCEL, Queue, "Cancel a job", None, Json(schema::<JobAccepted>)),
        Op::new(POST, queue::RETRY, Queue, "Queue a FAILED or TIMED_OUT job again", None, Json(schema::<JobAccepted>)),
        Op::new(POST, queue::PURGE_QUEUE, Queue, "Remove the caller's queued jobs (an admin key's: all)", None, Json(schema::<Purged>)),
        Op::new(GET, queue::HEALTH, Queue, "Job counts and workers by state", None, Json(schema::<EndpointHealth>)),
        Op::new(GET, queue::OPENAI_MODELS, OpenAi, "The endpoint's model", None, Json(schema::<ModelList>)),
        Op::new(POST, queue::OPENAI_CHAT_COMPLETIONS, OpenAi, "OpenAI chat completions on the endpoint's model", CHAT, CHAT_REPLY),
        Op::new(POST, queue::OPENAI_COMPLETIONS, OpenAi, "OpenAI text completions on the endpoint's model", TEXT, TEXT_REPLY),
    ]
};

/// The error answers of a group, by status (the statuses of [`crate::GatewayError::status`]
/// and 429 from the key limits).
fn errors(group: Group, c: &mut Components) -> Vec<(&'static str, Response)> {
    let body = match group {
        Group::Probe => return Vec::new(),
        Group::OpenAi => schema::<ErrorBody>(c),
        Group::Queue => schema::<RunpodErrorBody>(c),
        Group::Anthropic => schema::<AnthropicErrorBody>(c),
    };
    [
        ("400", "The request is not acceptable as sent"),
        ("401", "A missing or wrong API key"),
        (
            "404",
            "No such model, endpoint, job, file or batch (or not the caller's)",
        ),
        ("409", "The object's state forbids the call"),
        ("413", "The body is over the route's limit"),
        ("429", "A key's limit is reached; see Retry-After"),
        ("500", "The job failed"),
        ("503", "The queue is full or the job store unavailable"),
        ("504", "No result within the request timeout"),
    ]
    .into_iter()
    .map(|(status, why)| {
        let r = ResponseBuilder::new()
            .description(why)
            .content(JSON, Content::new(Some(body.clone())))
            .build();
        (status, r)
    })
    .collect()
}

/// The schema of one server-sent event as OpenAPI 3.2 reads a `text/event-stream` schema (and
/// schemathesis validates it): an object whose `data` is a string of JSON that `payload`
/// describes (`contentMediaType` and `contentSchema`), or with `done` also the literal
/// `[DONE]` that ends OpenAI's streams.
fn sse_events(payload: RefOr<Schema>, done: bool) -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let content_schema = serde_json::to_value(&payload).unwrap_or_default();
    let json = string()
        .content_media_type(JSON)
        .extensions(Some(
            [("contentSchema", content_schema)].into_iter().collect(),
        ))
        .build();
    let data: RefOr<Schema> = match done {
        true => {
            let done = string().enum_values(Some(["[DONE]"])).build();
            Schema::AnyOf(AnyOfBuilder::new().item(done).item(json).build()).into()
        }
        false => json.into(),
    };
    Schema::Object(
        ObjectBuilder::new()
            .property("data", data)
            .required("data")
            .property("event", string())
            .property("id", string())
            .build(),
    )
}

fn success(reply: Reply, c: &mut Components) -> Vec<(&'static str, Response)> {
    let described = |what: &str| ResponseBuilder::new().description(what);
    match reply {
        Reply::Json(s) => vec![(
            "200",
            described("OK")
                .content(JSON, Content::new(Some(s(c))))
                .build(),
        )],
        Reply::Generate(s, chunk) => {
            // Each event's data: a chunk, the error object of a failed stream, or `[DONE]`.
            let json = OneOfBuilder::new()
                .item(chunk(c))
                .item(schema::<ErrorBody>(c))
                .build();
            let events = sse_events(Schema::OneOf(json).into(), true);
            vec![(
                "200",
                described("The completion; with `stream: true`, server-sent events of chunks ending with `data: [DONE]`")
                    .content(JSON, Content::new(Some(s(c))))
                    .content("text/event-stream", Content::new(Some(events)))
                    .build(),
            )]
        }
        Reply::Message => vec![(
            "200",
            described("The message; with `stream: true`, Anthropic's server-sent events (`message_start` ... `message_stop`)")
                .content(JSON, Content::new(Some(schema::<MessageReply>(c))))
                .content("text/event-stream", Content::new(Some(sse_events(schema::<StreamedEvent>(c), false))))
                .build(),
        )],
        Reply::Response => vec![(
            "200",
            described("The response object; with `stream: true`, server-sent `response.*` events ending with `response.completed` (or `response.incomplete`)")
                .content(JSON, Content::new(Some(schema::<ResponseObject>(c))))
                .content("text/event-stream", Content::new(Some(sse_events(schema::<StreamedEvent>(c), false))))
                .build(),
        )],
        Reply::Bytes | Reply::Metrics => {
            let (what, media) = match reply {
                Reply::Bytes => ("The file's bytes", "application/octet-stream"),
                _ => ("Every series (see protocol::metrics)", "text/plain"),
            };
            let text = ObjectBuilder::new().schema_type(Type::String).build();
            vec![(
                "200",
                described(what)
                    .content(media, Content::new(Some(text)))
                    .build(),
            )]
        }
        Reply::Readiness => {
            let s = schema::<Readiness>(c);
            ["200", "503"]
                .into_iter()
                .map(|status| {
                    let r = described("Readiness (503: not every endpoint has its min_workers)")
                        .content(JSON, Content::new(Some(s.clone())))
                        .build();
                    (status, r)
                })
                .collect()
        }
    }
}

/// The path parameters a route's template names (`{endpoint}` as an enum of `endpoints`).
fn path_parameters(path: &str, endpoints: &[String]) -> Vec<Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let mut s = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1));
            if name == "endpoint" {
                s = s.enum_values(Some(endpoints.iter().cloned()));
            }
            utoipa::openapi::path::ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(s.build()))
                .build()
        })
        .collect()
}

/// `get_v2_endpoint_status_job` for `GET /v2/{endpoint}/status/{job}`: unique per method and
/// path, and stable.
fn operation_id(method: &HttpMethod, path: &str) -> String {
    let method = match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        _ => "other",
    };
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// Links from an operation that creates an object (see [`Op::creates`]) to every operation
/// on it.
fn links(op: &Op, all: &[Op]) -> Vec<(String, utoipa::openapi::link::Link)> {
    let Some(param) = op.creates else {
        return Vec::new();
    };
    let placeholder = format!("{{{param}}}");
    all.iter()
        .filter(|other| other.path.contains(&placeholder))
        .flat_map(|other| other.methods.iter().map(move |m| (m, other)))
        .map(|(m, other)| {
            let id = operation_id(m, other.path);
            let mut link = utoipa::openapi::link::LinkBuilder::new()
                .operation_id(id.clone())
                .parameter(param, "$response.body#/id");
            if other.path.contains("{endpoint}") {
                link = link.parameter("endpoint", "$request.path.endpoint");
            }
            (id, link.build())
        })
        .collect()
}

fn operation(
    op: &Op,
    method: &HttpMethod,
    all: &[Op],
    endpoints: &[String],
    c: &mut Components,
) -> Operation {
    let mut b = OperationBuilder::new()
        .operation_id(Some(operation_id(method, op.path)))
        .summary(Some(op.summary))
        .tag(match op.group {
            Group::Probe => "probes",
            Group::OpenAi => "openai",
            Group::Queue => "queue",
            Group::Anthropic => "anthropic",
        })
        .parameters(Some(
            path_parameters(op.path, endpoints)
                .into_iter()
                .chain((op.query)()),
        ));
    if let Some((media, body)) = op.body {
        let body = RequestBodyBuilder::new()
            .content(media, Content::new(Some(body(c))))
            .required(Some(Required::True))
            .build();
        b = b.request_body(Some(body));
    }
    if op.group != Group::Probe {
        // Keys are optional when the config has none (a loopback-only gateway).
        b = b
            .security(SecurityRequirement::new("apiKey", Vec::<String>::new()))
            .security(SecurityRequirement::default());
    }
    let mut ok = success(op.reply, c);
    for (name, link) in links(op, all) {
        for (_, r) in &mut ok {
            r.links.insert(name.clone(), RefOr::T(link.clone()));
        }
    }
    for (status, r) in ok.into_iter().chain(errors(op.group, c)) {
        b = b.response(status, r);
    }
    b.build()
}

/// The document for a gateway serving `models` (the `model` enum of the request bodies) and
/// `endpoints` (every endpoint name, the `{endpoint}` enum), as JSON.
pub fn document(models: &[String], endpoints: &[String]) -> Vec<u8> {
    // Plain data (string keys, no floats that JSON cannot hold): serializing cannot fail.
    let mut doc = serde_json::to_value(spec(models, endpoints)).expect("the document serializes");
    camel_case_links(&mut doc);
    serde_json::to_vec(&doc).expect("the document serializes")
}

/// utoipa 5.5 writes a link's `operationId` as `operation_id` (its `Link` lacks serde's
/// camelCase renaming), which OpenAPI tools ignore: renamed here.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|r| r.values_mut());
    for response in responses {
        let links = response.get_mut("links").and_then(|l| l.as_object_mut());
        for link in links.into_iter().flat_map(|l| l.values_mut()) {
            if let Some(link) = link.as_object_mut() {
                if let Some(id) = link.remove("operation_id") {
                    link.insert("operationId".into(), id);
                }
            }
        }
    }
}

/// The document itself; see [`document`].
pub fn spec(models: &[String], endpoints: &[String]) -> OpenApi {
    let mut components = Components::new();
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    let mut paths = Paths::new();
    let all = OPERATIONS;
    for op in all {
        for method in op.methods {
            let operation = operation(op, method, all, endpoints, &mut components);
            paths.add_path_operation(op.path, vec![method.clone()], operation);
        }
    }
    // The completion envelopes are inline (generic); their choices are named.
    schema::<protocol::openai::response::ChatChoice>(&mut components);
    schema::<protocol::openai::response::TextChoice>(&mut components);
    schema::<protocol::openai::response::ChatChunkChoice>(&mut components);
    // So is the input items' page (`List<InputItem>`); its items are named.
    schema::<InputItem>(&mut components);
    for name in ["ChatCompletionBody", "CompletionBody"] {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
            if let Some(RefOr::T(Schema::Object(model))) = o.properties.get_mut("model") {
                model.enum_values = Some(models.iter().cloned().map(Into::into).collect());
            }
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("sluice")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "OpenAI-compatible and RunPod-compatible API of a sluice gateway. The Files \
                     and Batch routes are also served under /v2/{endpoint}/openai/v1.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The operations' (method, path) pairs (`"GET"`, `/v1/models`), for the router's test.
pub fn documented_routes() -> Vec<(&'static str, &'static str)> {
    let name = |m: &HttpMethod| match m {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Delete => "DELETE",
        _ => "OTHER",
    };
    OPERATIONS
        .iter()
        .flat_map(|op| op.methods.iter().map(move |m| (name(m), op.path)))
        .collect()
}
