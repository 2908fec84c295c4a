#!/usr/bin/env python3
"""Steps to a target test accuracy on FashionMNIST, Adam vs NiNo (NowcastOptimizer with the
model description traced from the model: example_input=), for a LeNet-5, a small ResNet and a
small ViT (issue 15). A benchmark, not a test: a full run is long (the lead runs it).

    C=../shared/reference/checkpoints
    ./bazel-bin/nowcaster/nino_nowcaster --address=127.0.0.1:50051 \\
        --nino_model=nino_no_posw=$C/nino_no_posw.pt,nino_mlp=$C/nino_mlp.pt &
    PYTHONPATH=bazel-bin/python /usr/bin/python3 python/bench/vision_steps_to_target.py \\
        --nowcaster 127.0.0.1:50051 --models lenet5,resnet,vit --seeds 1000,2000,3000 \\
        --steps 10000 --eval_every 50 --target lenet5=0.88,resnet=0.90,vit=0.85 \\
        --out runs/vision.jsonl

PYTHONPATH=bazel-bin/python: the generated nino.v1 stubs of a source checkout (after
`bazel build //python:nowcaster_py_stubs`); not needed where the package is installed. The
default targets are placeholders: choose them from Adam's 10,000-step accuracy (issue 15) and
say so where the results are reported.

Every (model, optimizer, seed) run prints one JSON line (also appended to --out): the test
accuracy every --eval_every steps, the first evaluated step at or above the target
(steps_to_target, null if never), the final and best accuracy, wall time and NiNo counters. A
run NiNo cannot serve (describe_model refuses the model; the nowcaster refuses the job, e.g. a
GNN checkpoint for kernels wider than 3x3) is one JSON line with "error". The ViT's description
is version 2 (patch tokens, class token, position table, nn.MultiheadAttention): it needs a
nowcaster that reads version 2. Then one summary line per model and optimizer (and the NiNo / Adam ratio of
median steps to target). Adam and NiNo of a seed see the same initial weights and the same
batches.
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nino  # noqa: E402

DEFAULT_DATA = os.environ.get("NINO_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530  # FashionMNIST training-set pixel statistics


# ----- data -----

def _read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise ValueError("%s: not an IDX file of the expected kind (magic %#x, expected %#x)" %
                         (path, got, magic))
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load_fashion_mnist(data_dir):
    """(train_x [60000, 1, 28, 28] normalised float32, train_y, test_x, test_y)."""
    out = []
    for split in ("train", "t10k"):
        images = os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % split)
        labels = os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % split)
        for p in (images, labels):
            if not os.path.isfile(p):
                raise SystemExit("FashionMNIST file %s not found: install the Debian package "
                                 "dataset-fashion-mnist or pass --data_dir / set "
                                 "NINO_FASHION_MNIST_DIR" % p)
        x = _read_idx(images, 0x803).to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)
        out += [x.unsqueeze(1).contiguous(), _read_idx(labels, 0x801).to(torch.int64)]
    return tuple(out)


# ----- models -----

class LeNet5(nn.Module):
    """conv5x5 1->6, maxpool, conv5x5 6->16, maxpool, flatten 16*4*4, fc 120, 84, 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3x3 1->16 stride 2 + BN (28x28 -> 14x14), three stages of one BasicBlock (16,
    32 stride 2, 64 stride 2), global average pool, fc 64->10; 77,754 parameters. The stride-2
    stem makes a step 10x cheaper than at 28x28 (0.03 s vs 0.35 s on one core here), which is
    what lets 10,000-step runs for 3 seeds fit on this machine."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ViTBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Patch 7 (16 patches of 28x28), d 64, 2 pre-norm blocks, 4 heads, a class token that the
    linear head reads."""

    def __init__(self, d=64, depth=2, heads=4, patch=7):
        super().__init__()
        n = (28 // patch) ** 2
        self.patch = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.blocks = nn.Sequential(*[ViTBlock(d, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, d)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.blocks(x)
        return self.head(self.ln(x[:, 0]))


MODELS = {"lenet5": LeNet5, "resnet": ResNet, "vit": ViT}
# The NiNo model each architecture needs by default: LeNet-5's 5x5 kernels and the ViT's 7x7
# patch convolution need WNN+ (nino_mlp); the ResNet fits the GNN checkpoint (at most 3x3).
DEFAULT_NINO_MODEL = {"lenet5": "nino_mlp", "resnet": "nino_no_posw", "vit": "nino_mlp"}


# ----- training -----

def batch_indices(seed, step, n, size):
    """The batch of `step` for `seed`: the same for Adam and NiNo."""
    g = torch.Generator().manual_seed(seed * 1000003 + step)
    return torch.randint(0, n, (size,), generator=g)


@torch.no_grad()
def accuracy(model, x, y, chunk=1000):
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], chunk):
        correct += (model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum().item()
    model.train(was)
    return correct / x.shape[0]


def run(args, data, name, optimizer_kind, seed, target):
    train_x, train_y, test_x, test_y = data
    test_x, test_y = test_x[:args.eval_size], test_y[:args.eval_size]
    torch.manual_seed(seed)
    model = MODELS[name]()
    base = torch.optim.Adam(model.parameters(), lr=args.lr)
    record = {"model": name, "optimizer": optimizer_kind, "seed": seed, "target": target,
              "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size,
              "eval_size": test_x.shape[0],
              "params": sum(p.numel() for p in model.parameters())}
    opt = base
    if optimizer_kind == "nino":
        nino_model = args.nino_model or DEFAULT_NINO_MODEL[name]
        record.update(nino_model=nino_model, period=args.period, ctx=args.ctx)
        example = train_x[batch_indices(seed, 0, train_x.shape[0], args.batch_size)]
        try:
            opt = nino.NowcastOptimizer(
                base, model, nowcaster=args.nowcaster, period=args.period, ctx=args.ctx,
                max_train_steps=args.steps, nino_model=nino_model, seed=seed,
                timeout=args.timeout, example_input=example,
                job_id="vision-%s-s%d-p%d" % (name, seed, os.getpid()))
        except (ValueError, nino.NowcasterRefused) as e:
            record["error"] = "%s: %s" % (type(e).__name__, e)
            return record
    evals, reached = [], None
    t0 = time.monotonic()
    for step in range(args.steps):
        idx = batch_indices(seed, step, train_x.shape[0], args.batch_size)
        opt.zero_grad()
        if optimizer_kind == "adam" or opt.need_grads:
            F.cross_entropy(model(train_x[idx]), train_y[idx]).backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            acc = accuracy(model, test_x, test_y)
            evals.append([step + 1, round(acc, 4)])
            if reached is None and acc >= target:
                reached = step + 1
                if args.stop_at_target:
                    break
    record.update(steps_to_target=reached, final_accuracy=evals[-1][1],
                  best_accuracy=max(a for _, a in evals), steps_done=evals[-1][0],
                  wall_s=round(time.monotonic() - t0, 2), evals=evals)
    if optimizer_kind == "nino":
        s = opt.stats
        record["nino"] = {k: s.get(k) for k in ("nino_steps", "nino_applied", "nino_failures")}
        opt.close()
    return record


def summarize(records):
    """One line per (model, optimizer): seeds that reached the target, median steps to it,
    mean final accuracy; and per model the NiNo / Adam ratio of the medians."""
    out, medians = [], {}
    for key in sorted({(r["model"], r["optimizer"]) for r in records}):
        rs = [r for r in records if (r["model"], r["optimizer"]) == key]
        ok = [r for r in rs if "error" not in r]
        hit = [r["steps_to_target"] for r in ok if r["steps_to_target"] is not None]
        line = {"summary": True, "model": key[0], "optimizer": key[1], "runs": len(rs),
                "errors": [r["error"] for r in rs if "error" in r],
                "reached": "%d/%d" % (len(hit), len(ok)),
                "median_steps_to_target": statistics.median(hit) if hit else None,
                "mean_final_accuracy": (round(statistics.mean(r["final_accuracy"] for r in ok), 4)
                                        if ok else None)}
        medians[key] = line["median_steps_to_target"] if len(hit) == len(ok) and ok else None
        out.append(line)
    for line in out:
        if line["optimizer"] == "nino":
            a, n = medians.get((line["model"], "adam")), medians.get((line["model"], "nino"))
            line["nino_over_adam"] = round(n / a, 3) if a and n else None
    return out


def parse_targets(text, models):
    if "=" not in text:
        return {m: float(text) for m in models}
    targets = {}
    for item in text.split(","):
        m, _, v = item.partition("=")
        targets[m.strip()] = float(v)
    missing = [m for m in models if m not in targets]
    if missing:
        raise SystemExit("--target gives no accuracy for %s" % ", ".join(missing))
    return targets


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nowcaster", default="127.0.0.1:50051", help="nino_nowcaster address(es)")
    p.add_argument("--models", default="lenet5,resnet,vit", help="of %s" % ",".join(MODELS))
    p.add_argument("--optimizers", default="adam,nino")
    p.add_argument("--seeds", default="1000,2000,3000")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--eval_size", type=int, default=10000,
                   help="test examples per evaluation (the first N of the 10,000)")
    p.add_argument("--target", default="lenet5=0.88,resnet=0.90,vit=0.85",
                   help="test accuracy: one value, or model=value,...")
    p.add_argument("--stop_at_target", action="store_true",
                   help="end a run at the first evaluation at or above the target")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--period", type=int, default=1000)
    p.add_argument("--ctx", type=int, default=5)
    p.add_argument("--nino_model", default="",
                   help="the served NiNo model for every architecture (default: nino_mlp "
                        "(WNN+) for lenet5's 5x5 kernels and vit's 7x7 patches, nino_no_posw "
                        "for resnet)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--data_dir", default=DEFAULT_DATA)
    p.add_argument("--out", default="", help="append the JSON lines to this file too")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            raise SystemExit("unknown model %r (of %s)" % (m, ", ".join(MODELS)))
    optimizers = [o for o in args.optimizers.split(",") if o]
    if any(o not in ("adam", "nino") for o in optimizers):
        raise SystemExit("--optimizers takes adam and/or nino")
    targets = parse_targets(args.target, models)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    data = load_fashion_mnist(args.data_dir)
    out = open(args.out, "a") if args.out else None

    def emit(rec):
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    emit({"machine": {"cpus": os.cpu_count(), "threads": args.threads,
                      "torch": torch.__version__}, "args": vars(args)})
    records = []
    for name in models:
        for seed in seeds:
            for kind in optimizers:
                rec = run(args, data, name, kind, seed, targets[name])
                records.append(rec)
                emit(rec)
    for line in summarize(records):
        emit(line)
    if out:
        out.close()


if __name__ == "__main__":
    main()
