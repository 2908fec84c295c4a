"""Shared helpers of the nino package tests: the binaries, a nino_nowcaster process, a small
model and its training loop."""

import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import torch

ROOT = os.environ.get("NINO_TEST_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def _find(rel):
    """A Bazel-built file: in the runfiles under bazel test, else in the checkout's bazel-bin."""
    for base in (ROOT, os.path.join(ROOT, "bazel-bin")):
        path = os.path.join(base, rel)
        if os.path.exists(path):
            return path
    raise FileNotFoundError("%s not found under %s (bazel build //python/... first)" % (rel, ROOT))


def nowcaster_binary():
    return _find("nowcaster/nino_nowcaster")


def nino_nowcast_binary():
    return _find("tools/nino_nowcast")


def synthetic_ckpt():
    return _find("tools/synthetic_nino.pt")

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def tmpdir():
    return tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nowcaster:
    """A nino_nowcaster process serving the synthetic checkpoint as "nino_no_posw"."""

    def __init__(self, port=0, extra=()):
        self.dir = tmpdir()
        self.port = port
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        log_path = os.path.join(self.dir, "nowcaster.%d.log" % time.monotonic_ns())
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [nowcaster_binary(), "--address=127.0.0.1:%d" % self.port, "--metrics_port=0", "--threads=1",
             "--nino_model=nino_no_posw=%s" % synthetic_ckpt()] + self.extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = open(log_path).read()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError("nino_nowcaster exited (%s):\n%s" % (self.proc.returncode, text))
            time.sleep(0.05)
        raise RuntimeError("nino_nowcaster did not start:\n" + open(log_path).read())

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def restart(self):
        """Kills the daemon (SIGKILL: it forgets every job) and starts it on the same port."""
        self.kill()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def text(self):
        return open(self.log_path).read()


class MLP(torch.nn.Module):
    """A 2-layer MLP, 16 -> 32 -> 4."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def data(seed=0, n=512):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 4, generator=g)
    return x, (x @ w).argmax(1)


def loss_at(model, batch, step, size=32):
    x, y = batch
    i = (step * size) % x.shape[0]
    return torch.nn.functional.cross_entropy(model(x[i:i + size]), y[i:i + size])


def train(opt, model, batch, steps, always_backward=False, before_step=None):
    """The loop a user writes: backward only when opt.need_grads (or always). Batches depend
    only on the call index, so a resumed run sees the same batches."""
    for _ in range(steps):
        opt.zero_grad()
        if always_backward or opt.need_grads:
            loss_at(model, batch, opt.step_idx).backward()
        if before_step is not None:
            before_step(opt)
        opt.step()


def flat(model):
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])


def adam_reference(steps, seed=0, lr=1e-2):
    """Plain Adam on the same model/data for `steps` calls: what fallbacks must equal."""
    model = MLP(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = data(seed)
    for step in range(steps):
        opt.zero_grad()
        loss_at(model, x, step).backward()
        opt.step()
    return flat(model)


class FakeNowcaster:
    """An in-process nino.v1 server whose Predict answers as `mode` says:
    "ok" (last state + 0.01, valid chunks), "hang" (never answers), or a corruption:
    "bad_crc", "nan", "wrong_k", "wrong_step", "wrong_job", "short", "bad_offset"."""

    def __init__(self, mode="ok", chunk_bytes=256):
        import concurrent.futures

        import grpc
        from nino.v1 import nowcaster_pb2 as pb2
        from nino.v1 import nowcaster_pb2_grpc as pb2_grpc

        fake = self
        self.mode = mode
        self.states = {}  # step -> flat float32 tensor, as uploaded
        self.predicts = 0
        self.registrations = []

        class Servicer(pb2_grpc.NowcasterServicer):
            def RegisterJob(self, request, context):
                from nino.schedule import horizon_schedule
                n = 0
                for p in request.params:
                    m = 1
                    for d in p.shape:
                        m *= d
                    n += m
                fake.num_params = n
                fake.registrations.append(request)
                return pb2.RegisterJobResponse(
                    job_token="token-%d" % len(fake.registrations), num_params=n,
                    max_chunk_bytes=chunk_bytes, graph_ready=True,
                    k_schedule=horizon_schedule(request.max_train_steps, request.period,
                                                request.k_decay))

            def Predict(self, request, context):
                from nino import _crc32c
                fake.predicts += 1
                if fake.mode == "hang":
                    while context.is_active():
                        time.sleep(0.02)
                    return
                last = fake.states[max(fake.states)]
                pred = last + 0.01
                if fake.mode == "nan":
                    pred[len(pred) // 2] = float("nan")
                payload = pred.numpy().tobytes()
                total = len(payload)
                job, step, k = request.job_id, request.step, request.k
                if fake.mode == "wrong_k":
                    k += 1
                if fake.mode == "wrong_step":
                    step += 1
                if fake.mode == "wrong_job":
                    job += "x"
                offsets = list(range(0, total, chunk_bytes))
                if fake.mode == "short":
                    offsets = offsets[:-1]
                for i, off in enumerate(offsets):
                    data = payload[off:off + chunk_bytes]
                    crc = _crc32c.crc32c(data)
                    if fake.mode == "bad_crc" and i == len(offsets) - 1:
                        crc ^= 1
                    if fake.mode == "bad_offset" and i == 1:
                        off += 4
                    yield pb2.PredictionChunk(job_id=job, step=step, k=k, chunk_index=i,
                                              offset_bytes=off, total_bytes=total, data=data,
                                              crc32c=crc)

            def CloseJob(self, request, context):
                return pb2.CloseJobResponse()

        # PutState needs the step of its chunks: record them while streaming.
        def put_state(request_iterator, context):
            chunks = list(request_iterator)
            data = b"".join(c.data for c in chunks)
            step = chunks[0].step
            fake.states[step] = torch.frombuffer(bytearray(data), dtype=torch.float32).clone()
            return pb2.PutStateResponse(step=step, states_held=len(fake.states),
                                        bytes_received=len(data))

        servicer = Servicer()
        servicer.PutState = put_state
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
        pb2_grpc.add_NowcasterServicer_to_server(servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.server.stop(0)


def make_opt(model, address, **kw):
    """A NowcastOptimizer over Adam(lr 1e-2): period 20 (snapshots at calls 3, 7, 11, 15, 19,
    NiNo steps at 19, 39, 59, ...), max_train_steps 100."""
    import nino
    base = torch.optim.Adam(model.parameters(), lr=1e-2)
    kw.setdefault("period", 20)
    kw.setdefault("max_train_steps", 100)
    kw.setdefault("timeout", 10.0)
    return nino.NowcastOptimizer(base, model, nowcaster=address, **kw)


class NinoStepRecorder:
    """Captures, for every NiNo step of a run, the ctx snapshots it used and the parameters
    it applied: call `before` before opt.step() and `after` after it."""

    def __init__(self):
        self.steps = []  # dicts: step_idx, states [ctx][P], k, applied, params

    def before(self, opt):
        if not opt.need_grads:
            states = [h.clone() for h in opt.state_dict()["nino"]["history"]] + [opt.flat_params()]
            self.steps.append({"step_idx": opt.step_idx, "states": states})

    def after(self, opt, model):
        out = opt.last_outcome
        if out.nino_step:
            rec = self.steps[-1]
            assert rec["step_idx"] == out.step_idx
            rec.update(k=out.k, applied=out.applied, error=out.error, params=flat(model))


def run_recorded(opt, model, batch, steps, recorder, always_backward=False, between=None):
    for _ in range(steps):
        if between is not None:
            between(opt.step_idx)
        opt.zero_grad()
        if always_backward or opt.need_grads:
            loss_at(model, batch, opt.step_idx).backward()
        recorder.before(opt)
        opt.step()
        recorder.after(opt, model)


def nino_nowcast(model, states, k, lpe_seed):
    """The C++ in-process NiNo step (tools/nino_nowcast) on `states` saved as state dicts of
    `model`'s layout; returns its predicted flat parameters."""
    import collections
    d = tmpdir()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    paths = []
    for i, s in enumerate(states):
        sd, off = collections.OrderedDict(), 0
        for n, shape in zip(names, shapes):
            m = 1
            for x in shape:
                m *= x
            sd[n] = s[off:off + m].reshape(shape).clone()
            off += m
        path = os.path.join(d, "state%d.pt" % i)
        torch.save(sd, path)
        paths.append(path)
    out = os.path.join(d, "out.pt")
    proc = subprocess.run(
        [nino_nowcast_binary(), "--states", ",".join(paths), "--k", str(k), "--lpe_seed",
         str(lpe_seed), "--nino_ckpt", synthetic_ckpt(), "--threads", "1", "--out", out],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError("nino_nowcast failed:\n" + proc.stdout)
    result = torch.load(out)
    return torch.cat([result[n].reshape(-1).to(torch.float32) for n in names])
