"""RunPod handlers written the way RunPod's docs write them, one per mode (argv[1]). Nothing
here knows about sluice: the `runpod` SDK finds its job source in the environment."""

import asyncio
import os
import sys
import time

import runpod

MODE = sys.argv[1]
MARKS = os.environ.get("MARK_DIR", "/tmp")


def mark(job, what):
    """Leave a file saying what happened to a job (the tests look for it)."""
    with open(os.path.join(MARKS, f"{job['id']}.{what}"), "w") as f:
        f.write(str(time.time()))


def sync_handler(job):
    return {"echo": job["input"]}


async def async_handler(job):
    await asyncio.sleep(0.01)
    return {"echo": job["input"], "async": True}


def generator_handler(job):
    for i in range(int(job["input"].get("n", 3))):
        yield {"chunk": i}


def progress_handler(job):
    runpod.serverless.progress_update(job, "half way")
    time.sleep(1.5)
    return "done"


def trace_handler(job):
    # sluice hands the request's W3C trace context to the handler with the job.
    return {"traceparent": job.get("traceparent")}


def raising_handler(job):
    raise ValueError("boom from the handler")


def error_handler(job):
    return {"error": "the input was not acceptable"}


async def concurrent_handler(job):
    start = time.time()
    await asyncio.sleep(3.0)
    return {"start": start, "end": time.time()}


async def slow_handler(job):
    mark(job, "started")
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark(job, "stopped")
        raise
    return "never"


def failing_generator(job):
    yield {"chunk": 0}
    raise ValueError("the generator gave up")


def raising_modifier(current):
    raise RuntimeError("concurrency_modifier failed")


def huge_handler(job):
    # An output larger than a gateway takes in one report (10 MiB by default), or a small one.
    return "x" * int(job["input"]["mb"] * 1024 * 1024)


def huge_stream_handler(job):
    yield "x" * int(job["input"]["mb"] * 1024 * 1024)


def refresh_handler(job):
    # RunPod's way to ask for a fresh worker after this job (sent as `stopPod`).
    return {"pid": os.getpid(), "refresh_worker": True}


if MODE == "unfit":
    # RunPod's fitness checks run before the worker takes any job; a failing one reports
    # itself on the ping URL and exits the process.
    @runpod.serverless.register_fitness_check
    def check_gpu_memory():
        raise RuntimeError("no GPU memory left: 0 MiB free")


HANDLERS = {
    "refresh": {"handler": refresh_handler},
    "unfit": {"handler": sync_handler},
    "huge": {"handler": huge_handler},
    "huge_stream": {"handler": huge_stream_handler},
    "sync": {"handler": sync_handler},
    "trace": {"handler": trace_handler},
    "async": {"handler": async_handler},
    "generator": {"handler": generator_handler, "return_aggregate_stream": True},
    "progress": {"handler": progress_handler},
    "raises": {"handler": raising_handler},
    "error": {"handler": error_handler},
    "concurrent": {"handler": concurrent_handler, "concurrency_modifier": lambda current: 4},
    "slow": {"handler": slow_handler},
    "failing_stream": {"handler": failing_generator},
    # Crashes its worker as soon as the SDK asks how many jobs to take.
    "crashloop": {"handler": sync_handler, "concurrency_modifier": raising_modifier},
}

with open(os.path.join(MARKS, f"{MODE}.starts"), "a") as f:
    f.write(f"{time.time()}\n")
runpod.serverless.start(HANDLERS[MODE])
