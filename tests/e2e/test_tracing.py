"""OpenTelemetry traces: a real OTLP receiver (OTLP/HTTP protobuf and OTLP/gRPC, built on the
official `opentelemetry-proto` messages and `grpcio`) gets the spans of `sluice serve`'s
gateway and of its engine worker, all in the trace of the client's W3C `traceparent`, for a
streamed /v1 chat and a /v2 runsync."""

import os
import subprocess
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import MODEL, ROOT, Server, free_port, sluice_bin, wait_for
from test_autoscaling import redis_url  # noqa: F401 (a fixture)


class Spans:
    """Spans received, as (service, trace id, span id, parent id, name)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest):
        with self.lock:
            for rs in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.rows.append((attrs.get("service.name"), s.trace_id.hex(), s.span_id.hex(),
                                          s.parent_span_id.hex(), s.name))

    def of_trace(self, trace_id):
        with self.lock:
            return [r for r in self.rows if r[1] == trace_id]


@pytest.fixture
def http_receiver():
    spans = Spans()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            assert self.path == "/v1/traces"
            spans.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield spans, f"http://127.0.0.1:{srv.server_address[1]}", "http/protobuf"
    srv.shutdown()


@pytest.fixture
def grpc_receiver():
    spans = Spans()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            spans.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield spans, f"http://127.0.0.1:{port}", "grpc"
    srv.stop(0)


def traced_server(tmp_path, receiver):
    _, endpoint, protocol = receiver
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_BSP_SCHEDULE_DELAY": "100",
           # tower-http's per-request lines (debug), to see the trace id on log lines.
           "SLUICE_LOG": "warn,sluice=info,gateway=info,engine=info,worker=info,autoscaler=info,tower_http=debug"}
    return Server(tmp_path, env=env).wait_ready()


def names(rows, service):
    return {r[4] for r in rows if r[0] == service}


def wait_for_spans(spans, trace_id, gateway, worker):
    def complete():
        rows = spans.of_trace(trace_id)
        return rows if gateway <= names(rows, "sluice-gateway") and worker <= names(rows, "sluice-worker") else None

    try:
        return wait_for(complete, 20, "the trace's spans")
    except AssertionError:
        raise AssertionError(f"got {spans.of_trace(trace_id)}") from None


def check_tree(rows, client_span):
    """Every span hangs off the client's span, through spans of the same trace."""
    ids = {r[2] for r in rows} | {client_span}
    for r in rows:
        assert r[3] in ids, f"{r} has a parent outside the trace"
    roots = [r for r in rows if r[3] == client_span]
    assert [r[0] for r in roots] == ["sluice-gateway"], roots


def test_one_trace_from_the_client_through_the_gateway_to_the_engine(tmp_path, http_receiver):
    spans = http_receiver[0]
    s = traced_server(tmp_path, http_receiver)
    try:
        trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
        headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}
        with httpx.stream("POST", f"{s.base}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            assert r.status_code == 200 and "[DONE]" in r.read().decode()
        rows = wait_for_spans(spans, trace_id, {"POST /v1/chat/completions", "validate", "enqueue", "relay stream"},
                              {"job", "prefill", "decode", "post job-stream", "post job-done"})
        check_tree(rows, parent)

        trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
        headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
        run = {"input": {"prompt": "Hi", "sampling_params": {"max_tokens": 4}}}
        r = httpx.post(f"{s.base}/v2/{MODEL}/runsync", json=run, headers=headers, timeout=120)
        assert r.json()["status"] == "COMPLETED", r.text
        rows = wait_for_spans(spans, trace_id, {"POST /v2/{endpoint}/runsync", "enqueue", "wait for result"},
                              {"job", "prefill", "decode", "post job-done"})
        check_tree(rows, parent)
        # Log lines inside a traced span carry its trace id.
        assert f"trace_id={trace_id}" in s.log_text()
    finally:
        s.stop()


def test_grpc_export_and_a_trace_started_by_the_gateway(tmp_path, grpc_receiver):
    spans = grpc_receiver[0]
    s = traced_server(tmp_path, grpc_receiver)
    try:
        run = {"input": {"prompt": "Hi", "sampling_params": {"max_tokens": 2}}}
        r = httpx.post(f"{s.base}/v2/{MODEL}/runsync", json=run, timeout=120)
        assert r.json()["status"] == "COMPLETED", r.text
        # No client context: the gateway's request span starts the trace, the worker joins it.
        def joined():
            with spans.lock:
                roots = [row for row in spans.rows if row[4] == "POST /v2/{endpoint}/runsync"]
            for root in roots:
                if "job" in names(spans.of_trace(root[1]), "sluice-worker"):
                    return root
            return None

        root = wait_for(joined, 20, "a worker span in the gateway's trace")
        assert root[3] == "", "the request span is the root"
    finally:
        s.stop()


def test_a_trace_crosses_gateways_on_one_redis(tmp_path, http_receiver, redis_url):  # noqa: F811
    # Gateway A has no workers (`sluice gateway`); B (`sluice serve`) runs them. A job queued
    # through A runs on B's worker, whose spans still join A's request.
    spans, endpoint, protocol = http_receiver
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    port = free_port()
    log = open(tmp_path / "gateway-a.log", "w")
    a = subprocess.Popen([sluice_bin(), "gateway", "--port", str(port), "--queue", redis_url],
                         stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env})
    b = Server(tmp_path, "--queue", redis_url, env=env).wait_ready()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/health"), 60, "gateway A")
        trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
        run = {"input": {"prompt": "Hi", "sampling_params": {"max_tokens": 2}}}
        r = httpx.post(f"{base}/v2/{MODEL}/runsync", json=run, timeout=120,
                       headers={"traceparent": f"00-{trace_id}-{parent}-01"})
        assert r.json()["status"] == "COMPLETED", r.text
        rows = wait_for_spans(spans, trace_id, {"POST /v2/{endpoint}/runsync", "enqueue"}, {"job", "post job-done"})
        check_tree(rows, parent)
    finally:
        a.terminate()
        a.wait(10)
        b.stop()


def _answers(url):
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
