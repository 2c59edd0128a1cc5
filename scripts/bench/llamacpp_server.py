"""llama.cpp's HTTP server (PyPI `xllamacpp`, a prebuilt llama.cpp) on loopback, for comparison runs.

usage: python llamacpp_server.py MODEL.gguf PORT [PARALLEL]
"""

import os
import sys
import time

import xllamacpp as x

params = x.CommonParams()
params.model.path = sys.argv[1]
params.port = int(sys.argv[2])
params.hostnames = ["127.0.0.1"]
params.n_parallel = int(sys.argv[3]) if len(sys.argv) > 3 else 8
params.n_ctx = 8192 * params.n_parallel // 4
threads = os.cpu_count() or 2
params.cpuparams.n_threads = threads
params.cpuparams_batch.n_threads = threads
server = x.Server(params)
print(f"llama.cpp server listening on {server.listening_address}", flush=True)
while True:
    time.sleep(3600)
