#!/usr/bin/python3
"""Overhead of the Python client (nino.NowcastOptimizer) against a nino_nowcaster.

For each case prints one JSON line:
  record_ms        time a recording step() spends on the snapshot (flat float32 copy, enqueue)
                   beyond a plain base step (the training thread's cost per snapshot)
  upload_ms        one background PutState of a snapshot (CRC-32C, chunking, the RPC)
  nino_step_ms     a whole NiNo step() as the training loop sees it: waiting for pending uploads,
                   the synchronous upload of the newest snapshot, Predict, receiving and
                   checking the prediction, writing it into the parameters
  server_nowcast_ms the server's own NiNo computation (PredictionChunk.nowcast_seconds)
  client_overhead_ms nino_step_ms - server_nowcast_ms
(medians over --repeat NiNo periods; the first period, with registration and the server's
graph build, is not counted).

  /usr/bin/python3 python/bench/bench_client.py --start bazel-bin/nowcaster/nino_nowcaster \
      --gnn_ckpt bazel-bin/tools/synthetic_nino.pt --wnn_ckpt bazel-bin/tools/synthetic_nino_mlp.pt
  /usr/bin/python3 python/bench/bench_client.py --address 127.0.0.1:50051 --cases fm16
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nino  # noqa: E402
from nino import _crc32c  # noqa: E402


def fm16():
    """The official FM-16 CNN (trainer/models.cc): 14,378 parameters."""
    nn = torch.nn
    m = nn.Module()
    m.fc = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return m


def mlp10m():
    """MLP 784-2560-2560-1024-10: 11,198,474 parameters."""
    nn = torch.nn
    m = nn.Module()
    m.fc = nn.Sequential(nn.Linear(784, 2560), nn.ReLU(), nn.Linear(2560, 2560), nn.ReLU(),
                         nn.Linear(2560, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return m


CASES = {"fm16": (fm16, "nino_no_posw"), "mlp10m": (mlp10m, "nino_mlp"),
         "mlp10m-gnn": (mlp10m, "nino_no_posw")}


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "torch": torch.__version__,
            "loadavg_1m": round(os.getloadavg()[0], 2)}  # other work sharing the cores


def timed(obj, name, sink):
    fn = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)
    setattr(obj, name, wrapper)


def run_case(name, address, repeat, period):
    make, nino_model = CASES[name]
    torch.manual_seed(0)
    model = make()
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    base = torch.optim.SGD(params, lr=1.0)
    opt = nino.NowcastOptimizer(base, model, nowcaster=address, period=period, ctx=5,
                                max_train_steps=100 * period, nino_model=nino_model,
                                timeout=600.0, job_id="bench-%s-%d" % (name, os.getpid()))
    client = opt._client
    uploads, predicts = [], []
    timed(client, "_upload", uploads)
    timed(client, "_predict", predicts)
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    plain, record, nino_steps, server, first_chunk, stream = [], [], [], [], [], []
    for period_i in range(repeat + 1):
        for _ in range(period):
            for p, g in zip(params, grads):
                p.grad = g  # a fixed small step: smooth trajectories, as in training
            kind = ("nino" if not opt.need_grads else
                    "record" if (opt.step_idx + 1) % (period // 5) == 0 else "plain")
            t0 = time.perf_counter()
            opt.step()
            dt = time.perf_counter() - t0
            if kind == "record":
                record.append(dt)
                # Let the background upload finish before the next call (steps apart in
                # training), so that it is measured alone.
                with client._cv:
                    client._cv.wait_for(lambda: not client._queue and not client._busy)
            elif kind == "plain":
                plain.append(dt)
            else:
                if not opt.last_outcome.applied:
                    raise SystemExit("NiNo step failed: %s" % opt.last_outcome.error)
                if period_i > 0:
                    nino_steps.append(dt)
                    server.append(client.last_nowcast_seconds)
                    first_chunk.append(client.last_predict_timing[0])
                    stream.append(client.last_predict_timing[1])
    opt.close()
    med = lambda xs: statistics.median(xs) * 1000 if xs else None  # noqa: E731
    background = uploads[:]  # every PutState (the NiNo step's own synchronous one included)
    return {
        "case": name, "params": n, "snapshot_mb": round(4 * n / 1e6, 3),
        "nino_model": nino_model, "repeat": repeat,
        "record_ms": round(med(record) - med(plain), 3),
        "upload_ms": round(med(background), 3),
        "upload_mb_per_s": round(4 * n / 1e6 / (med(background) / 1000), 1),
        "nino_step_ms": round(med(nino_steps), 3),
        "predict_ms": round(med(predicts[1:]), 3),
        "server_nowcast_ms": round(med(server), 3),
        "client_overhead_ms": round(med(nino_steps) - med(server), 3),
        # of which: Predict beyond the server's computation (streaming the prediction back,
        # checking it) and the rest of the step (final upload, waiting, writing parameters)
        "predict_transfer_ms": round(med(predicts[1:]) - med(server), 3),
        "outside_predict_ms": round(med(nino_steps) - med(predicts[1:]), 3),
        "predict_first_chunk_ms": round(med(first_chunk), 3),  # server compute + its sending
        "predict_stream_ms": round(med(stream), 3),  # first chunk to checked prediction
        "crc32c": _crc32c.IMPLEMENTATION,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", help="a running nino_nowcaster (host:port)")
    ap.add_argument("--start", help="start this nino_nowcaster binary on a free loopback port")
    ap.add_argument("--gnn_ckpt", help="with --start: checkpoint served as nino_no_posw")
    ap.add_argument("--wnn_ckpt", help="with --start: checkpoint served as nino_mlp")
    ap.add_argument("--threads", type=int, default=0, help="with --start: server threads")
    ap.add_argument("--cases", default="fm16,mlp10m")
    ap.add_argument("--repeat", type=int, default=10, help="timed NiNo periods per case")
    ap.add_argument("--repeat_large", type=int, default=2, help="same for models > 1M params")
    ap.add_argument("--period", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    proc = None
    address = args.address
    if not address:
        if not args.start:
            ap.error("give --address or --start")
        log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        models = []
        if args.gnn_ckpt:
            models.append("nino_no_posw=" + args.gnn_ckpt)
        if args.wnn_ckpt:
            models.append("nino_mlp=" + args.wnn_ckpt)
        proc = subprocess.Popen([args.start, "--address=127.0.0.1:0", "--metrics_port=0",
                                 "--threads=%d" % args.threads,
                                 "--nino_model=" + ",".join(models)],
                                stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log.name).read())
            if m:
                address = "127.0.0.1:" + m.group(1)
                break
            if proc.poll() is not None:
                raise SystemExit("nino_nowcaster exited:\n" + open(log.name).read())
            time.sleep(0.1)
    try:
        for name in args.cases.split(","):
            repeat = args.repeat if name == "fm16" else args.repeat_large
            row = run_case(name, address, repeat, args.period)
            row["machine"] = machine()
            row["command"] = " ".join([sys.executable] + sys.argv)
            row["server"] = address
            print(json.dumps(row), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
