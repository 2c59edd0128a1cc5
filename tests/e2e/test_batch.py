"""OpenAI's Files and Batch APIs through the official `openai` client (`files.create`,
`batches.create`, `files.content`), on `/v1` and on `/v2/{endpoint}/openai/v1`: a batch of 24
lines completes with every `custom_id` answered as the same request sent directly would be; a
malformed file is refused naming its lines; a cancelled batch keeps the answers it had; an
expired one says which lines it dropped; pages of batches; and batch state survives a gateway
restart with the Redis store."""

import io
import json
import time

import openai
import pytest

from conftest import MODEL, Server, gateway_config, wait_for
from test_autoscaling import redis_url  # noqa: F401 (a fixture)

BASES = ["/v1", f"/v2/{MODEL}/openai/v1"]


@pytest.fixture(params=BASES)
def client(server, request):
    return openai.OpenAI(base_url=server.base + request.param, api_key="unused", max_retries=0, timeout=120)


def line(custom_id, content, max_tokens=8):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines):
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def upload(client, lines):
    return client.files.create(file=("requests.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")


def start(client, lines):
    f = upload(client, lines)
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "test"})


def wait_final(client, batch_id, timeout=300):
    return wait_for(
        lambda: (b := client.batches.retrieve(batch_id)).status in ("completed", "failed", "expired", "cancelled") and b,
        timeout,
        f"batch {batch_id} to end",
    )


def answers(client, file_id):
    if not file_id:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x.strip()]


def test_a_batch_of_24_lines_completes_with_every_custom_id(client):
    questions = [f"Say the number {i} in words." for i in range(24)]
    lines = [line(f"req-{i}", q) for i, q in enumerate(questions)]
    b = start(client, lines)
    assert b.status in ("validating", "in_progress") and b.request_counts.total == 24
    assert b.metadata == {"job": "test"}
    done = wait_final(client, b.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (24, 24, 0)
    assert done.error_file_id is None
    total = sum(o["response"]["body"]["usage"]["total_tokens"] for o in answers(client, done.output_file_id))
    assert done.usage.total_tokens == total > 0
    assert done.usage.input_tokens + done.usage.output_tokens == total
    out = answers(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(x["custom_id"] for x in lines)
    for o in out:
        assert o["response"]["status_code"] == 200 and o["error"] is None
        assert o["response"]["body"]["object"] == "chat.completion"
    # A line's answer is the answer of the same request sent directly (greedy decoding).
    direct = client.chat.completions.create(**lines[5]["body"])
    [mine] = [o for o in out if o["custom_id"] == "req-5"]
    assert mine["response"]["body"]["choices"][0]["message"]["content"] == direct.choices[0].message.content
    out_file = client.files.retrieve(done.output_file_id)
    assert out_file.purpose == "batch_output"


def test_a_malformed_file_is_refused_naming_its_lines(client):
    good = line("a", "hi")
    bad_params = line("b", "hi")
    bad_params["body"]["temperature"] = 7
    text = jsonl([good]) + b"{not json\n" + jsonl([bad_params, line("a", "again")])
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("bad.jsonl", io.BytesIO(text)), purpose="batch")
    body = e.value.body
    assert body["param"] == "file", body
    for n in (2, 3, 4):
        assert f"line {n}:" in body["message"], body["message"]
    assert "line 1:" not in body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("x.jsonl", io.BytesIO(jsonl([good]))), purpose="fine-tune")
    assert e.value.body["param"] == "purpose"
    unknown_model = line("c", "hi")
    unknown_model["body"]["model"] = "no-such-model"
    with pytest.raises(openai.BadRequestError) as e:
        upload(client, [unknown_model])
    assert "line 1:" in e.value.body["message"]


def test_a_cancelled_batch_keeps_what_it_had(client):
    lines = [line(f"c-{i}", f"Write a long story about the number {i}.", max_tokens=64) for i in range(30)]
    b = start(client, lines)
    time.sleep(1)
    c = client.batches.cancel(b.id)
    assert c.status in ("cancelling", "cancelled")
    done = wait_final(client, b.id, timeout=120)
    assert done.status == "cancelled" and done.cancelled_at
    assert done.request_counts.completed < 30
    out = answers(client, done.output_file_id)
    errs = answers(client, done.error_file_id)
    assert len(out) == done.request_counts.completed
    assert sorted(x["custom_id"] for x in out + errs) == sorted(x["custom_id"] for x in lines)
    assert all(e["error"]["code"] == "batch_cancelled" for e in errs)
    # Once ended, a cancel changes nothing.
    assert client.batches.cancel(b.id).status == "cancelled"


def test_files_and_pages(client):
    f = upload(client, [line("only", "hi")])
    assert client.files.retrieve(f.id).bytes == f.bytes
    assert client.files.content(f.id).content == jsonl([line("only", "hi")])
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.ConflictError):
        client.files.delete(f.id)
    wait_final(client, b.id)
    b2 = start(client, [line("x", "hello")])
    page = client.batches.list(limit=1)
    assert [x.id for x in page.data] == [b2.id] and page.has_more
    nxt = client.batches.list(limit=1, after=b2.id)
    assert [x.id for x in nxt.data] == [b.id]
    assert client.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_000000000000000000000000")
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=b2.input_file_id, endpoint="/v1/chat/completions", completion_window="1h")
    assert e.value.body["param"] == "completion_window"
    wait_final(client, b2.id)


def test_a_batch_past_its_window_expires(tmp_path):
    cfg = gateway_config(tmp_path, files_dir=str(tmp_path / "files"), batch_window_secs=2)
    s = Server(tmp_path, "--config", str(cfg)).wait_ready()
    try:
        c = openai.OpenAI(base_url=f"{s.base}/v1", api_key="unused", max_retries=0, timeout=60)
        lines = [line(f"e-{i}", f"Write a long story about {i}.", max_tokens=200) for i in range(20)]
        done = wait_final(c, start(c, lines).id, timeout=60)
        assert done.status == "expired" and done.expired_at
        out, errs = answers(c, done.output_file_id), answers(c, done.error_file_id)
        assert errs and all(e["error"]["code"] == "batch_expired" for e in errs)
        assert sorted(x["custom_id"] for x in out + errs) == sorted(x["custom_id"] for x in lines)
    finally:
        s.stop()


def test_batch_state_survives_a_gateway_restart_with_redis(tmp_path, redis_url):  # noqa: F811
    cfg = gateway_config(tmp_path, files_dir=str(tmp_path / "files"))
    s = Server(tmp_path, "--config", str(cfg), "--queue", redis_url).wait_ready()
    lines = [line(f"r-{i}", f"Count from {i} to {i + 50}.", max_tokens=48) for i in range(20)]
    try:
        c = openai.OpenAI(base_url=f"{s.base}/v1", api_key="unused", max_retries=0, timeout=60)
        b = start(c, lines)
        wait_for(lambda: c.batches.retrieve(b.id).request_counts.completed >= 2, 120, "some lines to finish")
    finally:
        s.stop()
    saved = json.loads((tmp_path / "files" / "batches" / f"{b.id}.json").read_text())
    finished = sum(1 for x in saved["lines"] if x["outcome"])
    assert 2 <= finished < 20, f"the restart must fall mid-batch: {finished} of 20 had ended"
    s = Server(tmp_path, "--config", str(cfg), "--queue", redis_url).wait_ready()
    try:
        c = openai.OpenAI(base_url=f"{s.base}/v1", api_key="unused", max_retries=0, timeout=60)
        done = wait_final(c, b.id)
        assert done.status == "completed", done
        out = answers(c, done.output_file_id)
        ids = [o["custom_id"] for o in out]
        assert sorted(ids) == sorted(x["custom_id"] for x in lines), "every line once, none twice"
        assert done.request_counts.completed == 20
        total = sum(o["response"]["body"]["usage"]["total_tokens"] for o in out)
        assert done.usage.total_tokens == total, "usage counted once across the restart"
    finally:
        s.stop()
