"""OpenAI's `/v1/embeddings` through the official `openai` client, served by the llama.cpp
backend with the config's pooling (mean for the default model): input forms, float and base64,
unit vectors, a batch equal to its inputs sent alone; `dimensions`, the mistral.rs backend and
a model that names no pooling refused by name."""

import math

import httpx
import openai
import pytest

from conftest import MODEL, Server, config_with
from conftest import conformance_server as server  # noqa: F401

TEXTS = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue rose by 4%."]


def close(a, b, tol):
    """Lists of vectors equal within `tol` in every component."""
    return len(a) == len(b) and all(len(x) == len(y) and max(abs(p - q) for p, q in zip(x, y)) <= tol for x, y in zip(a, b))


def backend(request) -> str:
    return request.node.callspec.params["engine_server"]


def test_embeddings_as_the_openai_client_reads_them(server, request):
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)
    if backend(request) == "mistralrs":
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model=MODEL, input="x")
        assert "mistral.rs" in e.value.body["message"], e.value.body
        return
    # The client asks for base64 by default and decodes it; float is asked for by name.
    batch = client.embeddings.create(model=MODEL, input=TEXTS)
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    vectors = [d.embedding for d in batch.data]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vectors)
    assert close([d.embedding for d in floats.data], vectors, 1e-6)
    alone = [client.embeddings.create(model=MODEL, input=t, encoding_format="float").data[0].embedding for t in TEXTS]
    assert close(alone, vectors, 1e-5), "a batch equals its inputs sent alone"
    counts = [httpx.post(f"{server.base}/tokenize", json={"prompt": t}).json()["count"] for t in TEXTS]
    assert batch.usage.prompt_tokens == sum(counts) == batch.usage.total_tokens
    # Token ids embed as their text does.
    ids = httpx.post(f"{server.base}/tokenize", json={"prompt": TEXTS[0]}).json()["tokens"]
    as_ids = client.embeddings.create(model=MODEL, input=ids, encoding_format="float").data[0].embedding
    assert close([as_ids], vectors[:1], 1e-5)
    # Different texts give different vectors.
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731 (unit vectors)
    assert cos(vectors[0], vectors[2]) < 0.9999
    for body, param in [({"input": "x", "dimensions": 8}, "dimensions"), ({"input": []}, "input"), ({"input": ""}, "input")]:
        bad = httpx.post(f"{server.base}/v1/embeddings", json={"model": MODEL, **body})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, bad.text


def test_pooling_is_the_configs_and_a_model_without_one_serves_none(default_server, tmp_path):
    def embed(base):
        return httpx.post(f"{base}/v1/embeddings", timeout=120, json={"model": MODEL, "input": TEXTS[0]})

    mean = embed(default_server.base).json()["data"][0]["embedding"]
    for pooling, answer in [("last", 200), (None, 400)]:
        tmp = tmp_path / str(pooling)
        path = config_with(tmp, pooling=pooling or "mean")
        if pooling is None:
            model = path.parent / f"models/{MODEL}.toml"
            model.write_text(model.read_text().replace('pooling = "mean"\n', ""))
        s = Server(tmp, "--config", str(path)).wait_ready()
        try:
            r = embed(s.base)
        finally:
            s.stop()
        assert r.status_code == answer, r.text
        if answer == 200:
            other = r.json()["data"][0]["embedding"]
            assert len(other) == len(mean) and not close([other], [mean], 1e-3), "the last token's state, not the mean"
        else:
            assert "engine.pooling" in r.json()["error"]["message"], r.text
