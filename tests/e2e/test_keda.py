"""KEDA's external scaler on `sluice gateway --keda-addr`: a real gRPC client, generated from
autoscaler/proto/externalscaler.proto by grpcio-tools (another toolchain than the server's
tonic), against two gateways on one Redis. Inactive at zero; a queued job makes the endpoint
active and wants a worker, pushed on the open stream; a burst wants workers by
`request_count` up to `max_workers` on either gateway; an echo worker drains the queue and,
idle past `idle_timeout_secs`, is no longer wanted."""

import importlib
import os
import queue
import subprocess
import sys
import threading
import time

import grpc
import httpx
import pytest
from grpc_tools import protoc

from conftest import MODEL, ROOT, config_with, free_port, sluice_bin, wait_for
from test_autoscaling import redis_url  # noqa: F401 (a fixture)

TOKEN = "keda-test-token"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The stubs, generated now from the proto the server is built from."""
    out = tmp_path_factory.mktemp("stubs")
    proto_dir = ROOT / "autoscaler/proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto_dir / "externalscaler.proto")])
    assert rc == 0
    sys.path.insert(0, str(out))
    return importlib.import_module("externalscaler_pb2"), importlib.import_module("externalscaler_pb2_grpc")


class Gateway:
    def __init__(self, tmp, config, redis):
        self.port, self.keda = free_port(), free_port()
        self.log = open(tmp / f"gateway-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sluice_bin(), "gateway", "--config", str(config), "--queue", redis, "--port", str(self.port),
             "--worker-token", TOKEN, "--keda-addr", f"127.0.0.1:{self.keda}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self.ready, 60, "the gateway")

    def ready(self):
        try:
            return httpx.get(f"{self.base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def test_keda_scaler_follows_the_policy_on_every_gateway(tmp_path, redis_url, pb):
    msgs, rpc = pb
    config = config_with(tmp_path, scaler="request_count", scaler_value=1.0, idle_timeout_secs=2, max_workers=3)
    gateways = [Gateway(tmp_path, config, redis_url) for _ in range(2)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{g.keda}") for g in gateways]
    stubs = [rpc.ExternalScalerStub(c) for c in channels]
    ref = msgs.ScaledObjectRef(name="llm", namespace="default", scalerMetadata={"endpoint": MODEL})
    desired = lambda stub: stub.GetMetrics(msgs.GetMetricsRequest(scaledObjectRef=ref, metricName="s0-sluice-desired-workers")).metricValues[0]
    worker = None
    try:
        spec = stubs[0].GetMetricSpec(ref).metricSpecs[0]
        assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == ("sluice-desired-workers", 1.0, 1)
        for stub in stubs:
            assert stub.IsActive(ref).result is False
            value = desired(stub)
            assert (value.metricName, value.metricValueFloat) == ("s0-sluice-desired-workers", 0.0)

        # The stream says "inactive" at once, then pushes the first job's arrival.
        pushed = queue.Queue()
        stream = stubs[1].StreamIsActive(ref)
        def read():
            try:
                for m in stream:
                    pushed.put((time.monotonic(), m.result))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.CANCELLED, e  # our own cancel at the end

        threading.Thread(target=read, daemon=True).start()
        assert pushed.get(timeout=10)[1] is False
        with httpx.Client(timeout=30) as http:
            run = lambda: http.post(f"{gateways[0].base}/v2/{MODEL}/run", json={"input": {"prompt": "hi"}})
            sent = time.monotonic()
            assert run().status_code == 200
            at, active = pushed.get(timeout=10)
            assert active is True
            # Woken by the arrival, not by the stream's 1 s poll.
            assert at - sent < 0.9, at - sent
            for stub in stubs:
                assert stub.IsActive(ref).result is True
                assert desired(stub).metricValueFloat == 1.0
            # A burst: one worker per job in flight (request_count 1), at most max_workers.
            for _ in range(4):
                assert run().status_code == 200
            assert [desired(s).metricValueFloat for s in stubs] == [3.0, 3.0]

            # A worker drains the queue; idle, it is wanted until the idle timeout, then not.
            worker = subprocess.Popen(
                [sluice_bin(), "worker", "--handler", "echo", "--endpoint", MODEL, "--gateway", gateways[1].base,
                 "--worker-token", TOKEN, "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
            )
            health = lambda: http.get(f"{gateways[0].base}/v2/{MODEL}/health").json()["jobs"]
            wait_for(lambda: health()["completed"] == 5, 60, "the echo worker to finish the jobs")
            assert desired(stubs[0]).metricValueFloat == 1.0, "idle, not yet past the idle timeout"
            wait_for(lambda: desired(stubs[0]).metricValueFloat == 0.0, 10, "the idle timeout")
            wait_for(lambda: desired(stubs[1]).metricValueFloat == 0.0, 10, "the idle timeout (gateway 2)")
            assert stubs[0].IsActive(ref).result is False
            wait_for(lambda: not pushed.empty() and pushed.get()[1] is False, 10, "the stream to push inactive")

        # Errors are gRPC statuses, not crashes.
        with pytest.raises(grpc.RpcError) as e:
            stubs[0].IsActive(msgs.ScaledObjectRef(name="x", scalerMetadata={"endpoint": "nope"}))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stubs[0].GetMetrics(msgs.GetMetricsRequest(scaledObjectRef=msgs.ScaledObjectRef(name="x")))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stream.cancel()
    finally:
        if worker:
            worker.terminate()
            worker.wait(30)
        for c in channels:
            c.close()
        for g in gateways:
            g.stop()
