#!/usr/bin/python3
"""Throughput baseline: Debian's python3-torch training the FM-16 network (the official
utils.vision.Net layout) with Adam, batch 128, on FashionMNIST -- the same work per step as
`nino_train --task fm16` (no evaluation). Prints one JSON line.

usage: /usr/bin/python3 tools/bench_python_fm16.py [--steps 500] [--threads 1] [--warmup 20]
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(dirname, prefix):
    with gzip.open(os.path.join(dirname, f"{prefix}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(dirname, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(x.astype(np.float32)) / 255.0 - 0.1307) / 0.3081
    return x, torch.from_numpy(y.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=os.environ.get("NINO_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = load(a.data, "train")
    x, y = x[:55000], y[:55000]
    torch.manual_seed(1000)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 10))
    opt = torch.optim.AdamW(net.parameters(), lr=6e-3, weight_decay=0)
    g = torch.Generator().manual_seed(1000)
    perm = torch.randperm(55000, generator=g)
    pos = 0

    def step():
        nonlocal pos, perm
        if pos + 128 > 55000:
            perm, pos = torch.randperm(55000, generator=g), 0
        idx = perm[pos:pos + 128]
        pos += 128
        opt.zero_grad()
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"impl": "python3-torch " + torch.__version__, "threads": a.threads, "steps": a.steps,
                      "seconds": round(dt, 3), "steps_per_second": round(a.steps / dt, 2),
                      "cpu_steps_per_second": round(a.steps / dc, 2)}))


if __name__ == "__main__":
    main()
