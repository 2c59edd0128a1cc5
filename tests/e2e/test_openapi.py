"""The OpenAPI document at /openapi.json, and schemathesis (PyPI) run against `sluice serve`
from it: property-based requests on every documented operation, checked for server errors
and for answers that break the document (status codes, content types, body schemas,
headers), and schema-invalid requests checked to be refused.

The run's time budget is SLUICE_SCHEMATHESIS_SECONDS (default 60 here; `scripts/schemathesis`
runs it longer). Generation is bounded so that no request times out (a 504 counts as a server
error): the model's context is 128 tokens, so the longest request (16 choices) generates about
2,000 tokens, well inside the 120 s request timeout.
"""

import json
import os
import re
import subprocess
import sys
import urllib.request

import httpx
import pytest

from conftest import MODEL, ROOT, Server, gateway_config, get_json

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    config = gateway_config(tmp, request_timeout_secs=120)
    text = (tmp / f"configs/models/{MODEL}.toml").read_text()
    (tmp / f"configs/models/{MODEL}.toml").write_text(
        re.sub(r"(?m)^context_length = \d+", "context_length = 128", text)
    )
    s = Server(tmp, "--config", str(config)).wait_ready()
    yield s
    s.stop()


def test_the_document_is_openapi_3_1_and_names_what_is_served(small_server):
    status, doc = get_json(f"{small_server.base}/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for route in ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v2/{endpoint}/run",
                  "/v2/{endpoint}/status/{job}", "/v1/batches", "/v1/files"]:
        assert route in paths, route
    chat = doc["components"]["schemas"]["ChatCompletionBody"]
    assert chat["properties"]["model"]["enum"] == [MODEL]
    assert chat["additionalProperties"] is False
    endpoint = next(p for p in paths["/v2/{endpoint}/run"]["post"]["parameters"] if p["name"] == "endpoint")
    assert endpoint["schema"]["enum"] == [MODEL]
    # The worker protocol is not part of the client API.
    assert not any("job-take" in p for p in paths)
    # A malformed query is refused in the route's own error shape, not axum's plain text.
    req = urllib.request.Request(f"{small_server.base}/v2/{MODEL}/runsync?wait=soon", data=b'{"input": 1}')
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    assert "error" in json.loads(e.value.read())


def test_generation_stops_at_the_configured_context(small_server):
    # Found by schemathesis: without max_tokens, a context shorter than the model's own
    # was not enforced, and the request ran on for minutes.
    # SmolLM2's end-of-text tokens (0 and 2) banned, so only the context can end it.
    body = {"model": MODEL, "messages": [{"role": "assistant", "content": None}], "temperature": 0,
            "logit_bias": {"0": -100, "2": -100}}
    r = httpx.post(f"{small_server.base}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    choice, usage = r.json()["choices"][0], r.json()["usage"]
    assert choice["finish_reason"] == "length" and usage["total_tokens"] == 128, r.json()


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(small_server, tmp_path):
    seconds = os.environ.get("SLUICE_SCHEMATHESIS_SECONDS", "60")
    report = tmp_path / "report.json"
    cmd = [
        str(ROOT / ".venv/bin/schemathesis"), "run", f"{small_server.base}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--max-time", seconds,
        "--workers", "1",
        "--seed", "1",
        "--request-timeout", "180",
        "--suppress-health-check", "all",
        "--no-color",
        "--report", "json", "--report-json-path", str(report),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=int(seconds) + 600)
    print(out.stdout[-6000:], file=sys.stderr)
    assert out.returncode == 0, out.stdout[-12000:] + out.stderr[-3000:]
    # Every part of the document is checkable (no dangling reference skipped).
    assert "Unresolvable references" not in out.stdout, out.stdout[-6000:]
    # The server is still healthy afterwards.
    assert get_json(f"{small_server.base}/health")[0] == 200


def test_every_stream_conforms_to_its_documented_events(small_server):
    """Each streaming route's events, checked by schemathesis' own response validation (an SSE
    schema describes the event object, its `data` JSON through `contentSchema`): fuzzing
    reaches a successful stream only now and then, so the check is made here every run."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{small_server.base}/openapi.json")
    say = [{"role": "user", "content": "hi"}]
    bodies = {
        "/v1/completions": {"prompt": "k", "max_tokens": 4},
        "/v1/chat/completions": {"messages": say, "max_tokens": 4},
        "/v1/messages": {"messages": say, "max_tokens": 4},
        "/v1/responses": {"input": "hi", "max_output_tokens": 4},
    }
    cases = {}
    for path, body in bodies.items():
        case = schema[path]["POST"].Case(body={"model": MODEL, "stream": True, **body}, media_type="application/json")
        resp = case.call(base_url=small_server.base)
        assert resp.status_code == 200 and resp.content.count(b"data: ") > 2, resp.content
        case.validate_response(resp)
        cases[path] = (case, resp)
    # The check has teeth: a chunk outside the document is refused.
    case = cases["/v1/completions"][0]
    resp = case.call(base_url=small_server.base)  # a fresh response: a validated one keeps its events
    resp.content = b'data: {"id": 1, "choices": 3}\n\n'
    with pytest.raises(BaseException, match="SSE event violates schema"):  # a FailureGroup
        case.validate_response(resp)
