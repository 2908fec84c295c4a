#!/usr/bin/env python3
"""A small Llama (grouped-query attention, RMSNorm, SwiGLU; HF parameter names) trained on the
KJV text bytes, AdamW vs NiNo with its two graphs (issue 15): the official NeuralGraphLlama graph
the server builds from the names (NowcastOptimizer num_heads= / num_kv_heads=, graph kind auto)
and the model's real connectivity (model_description=nino.describe_llama(...), description
version 4). A benchmark, not a test.

    C=../shared/reference/checkpoints
    ./bazel-bin/nowcaster/nino_nowcaster --address=127.0.0.1:50051 \\
        --nino_model=nino_no_posw=$C/nino_no_posw.pt &
    PYTHONPATH=bazel-bin/python /usr/bin/python3 python/bench/llama_graphs.py \\
        --nowcaster 127.0.0.1:50051 --seeds 1000 --steps 3000 --out runs/llama.jsonl

The task mirrors nino_train's LM task (bytes, context 128, batch 32, AdamW lr 1e-3 weight decay
0.01, the last 5% of the text held out) with a Llama of d 64, 3 layers, 4 heads, 2 key / value
heads, ffn 172 (the model of python/tests/described_models.py). NiNo: period 1000, the schedule
for --steps. Every (variant, seed) run prints one JSON line (also appended to --out): the
validation perplexity every --eval_every steps (16 fixed held-out batches), its best, the NiNo
counters and wall time. Every run of a seed starts from the same weights and sees the same
batches.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import nino  # noqa: E402
from described_models import TinyLlama  # noqa: E402

KJV_RANGE = "Genesis 1:1-Revelation 22:21"  # as trainer/data/text_corpus.cc
CONFIG = dict(vocab=256, d=64, layers=3, heads=4, kv_heads=2, ff=172)


def load_text(cache):
    """The KJV bytes (bible-kjv's `bible`), cached as nino_train caches them."""
    if os.path.isfile(cache) and os.path.getsize(cache) > 4_000_000:
        with open(cache, "rb") as f:
            return f.read()
    text = subprocess.run(["bible", "-f", KJV_RANGE], stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, check=True).stdout
    with open(cache + ".tmp", "wb") as f:
        f.write(text)
    os.replace(cache + ".tmp", cache)
    return text


def batches(tokens, seed, step, batch, context):
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, tokens.numel() - context - 1, (batch,), generator=g)
    x = torch.stack([tokens[s:s + context + 1] for s in starts.tolist()])
    return x[:, :-1], x[:, 1:]


def perplexity(model, val, context, n=16, batch=32):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(n):
            x, y = batches(val, 7, i, batch, context)
            total += F.cross_entropy(model(x).reshape(-1, CONFIG["vocab"]), y.reshape(-1)).item()
    model.train()
    return math.exp(total / n)


def make_optimizer(args, variant, model, seed):
    base = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    if variant == "adam":
        return base
    kw = dict(nowcaster=args.nowcaster, max_train_steps=args.steps, nino_model=args.nino_model,
              seed=seed, timeout=600.0)
    if variant == "official":
        kw.update(num_heads=CONFIG["heads"], num_kv_heads=CONFIG["kv_heads"])
    else:
        kw.update(model_description=nino.describe_llama(model, CONFIG["heads"],
                                                        CONFIG["kv_heads"]))
    return nino.NowcastOptimizer(base, model, **kw)


def run(args, data, variant, seed):
    train, val = data
    torch.manual_seed(seed)
    model = TinyLlama(**CONFIG)
    opt = make_optimizer(args, variant, model, seed)
    curve, start = [], time.time()
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        if getattr(opt, "need_grads", True):
            x, y = batches(train, seed, step, args.batch, args.context)
            F.cross_entropy(model(x).reshape(-1, CONFIG["vocab"]), y.reshape(-1)).backward()
        opt.step()
        if step % args.eval_every == 0:
            curve.append((step, round(perplexity(model, val, args.context), 4)))
    stats = opt.stats if variant != "adam" else {}
    if variant != "adam":
        opt.close()
    return {"variant": variant, "seed": seed, "steps": args.steps, "curve": curve,
            "best_ppl": min(p for _, p in curve), "final_ppl": curve[-1][1],
            "nino_applied": stats.get("nino_applied", 0),
            "nino_failures": stats.get("nino_failures", 0),
            "seconds": round(time.time() - start, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nowcaster", default="127.0.0.1:50051")
    p.add_argument("--nino_model", default="nino_no_posw")
    p.add_argument("--variants", default="adam,official,described")
    p.add_argument("--seeds", default="1000")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--text_cache", default="/tmp/nino_kjv.txt")
    p.add_argument("--out", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    text = load_text(args.text_cache)
    tokens = torch.tensor(list(text), dtype=torch.int64)
    split = int(tokens.numel() * 0.95)
    data = (tokens[:split], tokens[split:])
    print("machine: %d cores; torch %s; %s" % (os.cpu_count(), torch.__version__,
                                               time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                             time.gmtime())), flush=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            result = run(args, data, variant, seed)
            line = json.dumps(result)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
