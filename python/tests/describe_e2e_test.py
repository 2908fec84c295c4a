"""Described jobs against a real nino_nowcaster (synthetic GNN and WNN+ checkpoints):
NowcastOptimizer(example_input=) trains a LeNet-5 (5x5 kernels: WNN+), a small ResNet (GNN) and
the benchmark's ViT (a version-2 description; its 7x7 patch conv: WNN+) and a CNN with
depthwise and grouped convolutions (version 3) and a tiny Llama with grouped-query attention
described by describe_llama (version 4), with applied NiNo steps; the graph the server builds
has the size the contract's closed form gives; the applied
LeNet and Llama steps equal nino_nowcast --model_description on the same snapshots; an MLP described gives
the same NiNo steps as the name-based graph; a model the name-based graph cannot map is refused
with the hint to pass example_input, and trains with it."""

import json
import os
import subprocess
import time
import unittest

import grpc
import torch

import nino
import torch.nn.functional as F
from described_models import (DepthwiseSeparable, LeNet5, SmallResNet, TinyLlama, ViT,
                              graph_size, vit_graph_size)
from nino_test_util import (MLP, Nowcaster, NinoStepRecorder, _find, data, flat, make_opt,
                            nino_nowcast_binary, synthetic_ckpt, tmpdir)


def synthetic_mlp_ckpt():
    return _find("tools/synthetic_nino_mlp.pt")


def images(seed, n=256, channels=1, size=28):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    return x, torch.randint(0, 10, (n,), generator=g)


def run(opt, model, batch, steps, recorder=None, size=16):
    x, y = batch
    for _ in range(steps):
        i = (opt.step_idx * size) % x.shape[0]
        opt.zero_grad()
        if opt.need_grads:
            torch.nn.functional.cross_entropy(model(x[i:i + size]), y[i:i + size]).backward()
        if recorder:
            recorder.before(opt)
        opt.step()
        if recorder:
            recorder.after(opt, model)


class DescribedJobsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        # Nowcaster() serves the synthetic GNN as nino_no_posw; a second --nino_model flag adds
        # the synthetic WNN+ as nino_mlp (repeated flags add up).
        cls.server = Nowcaster(extra=["--nino_model=nino_mlp=%s" % synthetic_mlp_ckpt()])
        from nino.v1 import nowcaster_pb2, nowcaster_pb2_grpc
        cls.pb2 = nowcaster_pb2
        cls.channel = grpc.insecure_channel(cls.server.address)
        cls.stub = nowcaster_pb2_grpc.NowcasterStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.kill()

    def job_status(self, job_id):
        """The job's JobStatus once its graph is built (ListJobs: no token needed)."""
        deadline = time.monotonic() + 30
        while True:
            jobs = [j for j in self.stub.ListJobs(self.pb2.ListJobsRequest(), timeout=10).jobs
                    if j.job_id == job_id]
            self.assertEqual(len(jobs), 1, job_id)
            if jobs[0].graph_state != "building" or time.monotonic() > deadline:
                return jobs[0]
            time.sleep(0.05)

    def test_lenet_trains_with_example_input(self):
        model = LeNet5(seed=1)
        batch = images(1)
        opt = make_opt(model, self.server.address, nino_model="nino_mlp", max_train_steps=60,
                       seed=2, example_input=batch[0][:16])
        status = self.job_status(opt.job_id)
        self.assertEqual(status.graph_state, "ready")
        self.assertEqual((status.num_nodes, status.num_edges),
                         graph_size(opt.model_description, model))
        rec = NinoStepRecorder()
        run(opt, model, batch, 60, rec)
        s = opt.stats
        opt.close()
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (3, 3, 0), s)
        for r in rec.steps:
            moved = (r["params"] - r["states"][-1]).abs().max().item()
            self.assertGreater(moved, 1e-5, "NiNo step %d applied nothing" % r["step_idx"])
        # The applied step is the C++ in-process step with the same description.
        r = rec.steps[0]
        expected = self.nino_nowcast(model, r["states"], r["k"], 2, opt.model_description,
                                     synthetic_mlp_ckpt())
        self.assertLessEqual((r["params"] - expected).abs().max().item(), 1e-6)

    def test_vit_trains_with_example_input(self):
        # The benchmark's ViT (patch 7: 49 weights per edge, WNN+; d 64, 2 blocks, 4 heads): a
        # version-2 description, the server's graph has the closed-form size. One of its NiNo
        # steps takes ~16 s on one thread, so a ViT of d 16 with one block trains below.
        model = ViT()
        x = images(5)[0][:16]
        opt = make_opt(model, self.server.address, nino_model="nino_mlp", example_input=x)
        self.assertEqual(opt.model_description["version"], 2)
        status = self.job_status(opt.job_id)
        self.assertEqual((status.graph_state, status.num_nodes, status.num_edges),
                         ("ready",) + vit_graph_size())
        opt.close()

        torch.manual_seed(5)
        model = ViT(d=16, depth=1, heads=2)
        batch = images(6)
        opt = make_opt(model, self.server.address, nino_model="nino_mlp", max_train_steps=60,
                       seed=3, example_input=batch[0][:16])
        status = self.job_status(opt.job_id)
        self.assertEqual((status.graph_state, status.num_nodes, status.num_edges),
                         ("ready",) + vit_graph_size(d=16, depth=1, heads=2))
        rec = NinoStepRecorder()
        run(opt, model, batch, 60, rec)
        s = opt.stats
        opt.close()
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (3, 3, 0), s)
        self.assertTrue(torch.isfinite(flat(model)).all())
        for r in rec.steps:
            moved = (r["params"] - r["states"][-1]).abs().max().item()
            self.assertGreater(moved, 1e-5, "NiNo step %d applied nothing" % r["step_idx"])
        # The applied step is nino_nowcast's with the same (JSON) description.
        r = rec.steps[0]
        expected = self.nino_nowcast(model, r["states"], r["k"], 3, opt.model_description,
                                     synthetic_mlp_ckpt())
        self.assertLessEqual((r["params"] - expected).abs().max().item(), 1e-6)

    def assert_trains_with_example_input(self, model, seed, version):
        """`model` (12x12 images) registers with example_input on the synthetic GNN; the server's
        graph has the closed-form size; 40 steps apply 2 NiNo steps that move the weights."""
        batch = images(seed, size=12)
        opt = make_opt(model, self.server.address, nino_model="nino_no_posw", max_train_steps=40,
                       example_input=batch[0][:8])
        self.assertEqual(opt.model_description["version"], version)
        status = self.job_status(opt.job_id)
        self.assertEqual((status.graph_state, status.num_nodes, status.num_edges),
                         ("ready",) + graph_size(opt.model_description, model))
        before = flat(model)
        run(opt, model, batch, 40, size=8)
        s = opt.stats
        opt.close()
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (2, 2, 0), s)
        self.assertTrue(torch.isfinite(flat(model)).all())
        self.assertGreater((flat(model) - before).abs().max().item(), 1e-4)

    def test_resnet_trains_with_example_input(self):
        torch.manual_seed(3)
        self.assert_trains_with_example_input(SmallResNet(), 3, 1)

    def test_depthwise_separable_cnn_trains_with_example_input(self):
        # Grouped and depthwise convolutions (description version 3, DescriptionOp.groups):
        # every kernel is 3x3 or 1x1, so the GNN checkpoint serves it.
        torch.manual_seed(4)
        self.assert_trains_with_example_input(DepthwiseSeparable(), 4, 3)

    def test_mlp_described_equals_the_name_based_graph(self):
        results = []
        for described in (False, True):
            model = MLP()
            kw = {"example_input": data()[0][:8]} if described else {}
            opt = make_opt(model, self.server.address, max_train_steps=40, seed=5, **kw)
            status = self.job_status(opt.job_id)
            results.append((status.num_nodes, status.num_edges))
            rec = NinoStepRecorder()
            x = data()
            for _ in range(40):
                opt.zero_grad()
                if opt.need_grads:
                    i = (opt.step_idx * 32) % 512
                    torch.nn.functional.cross_entropy(model(x[0][i:i + 32]),
                                                      x[1][i:i + 32]).backward()
                rec.before(opt)
                opt.step()
                rec.after(opt, model)
            self.assertEqual(opt.stats["nino_applied"], 2, opt.stats)
            opt.close()
            results.append(flat(model))
        self.assertEqual(results[0], results[2])  # the same graph size
        self.assertLessEqual((results[1] - results[3]).abs().max().item(), 1e-6)

    def test_tiny_llama_with_grouped_query_attention_trains_described(self):
        # describe_llama (version 4: kv_heads, multiply) on the synthetic GNN: the server's graph
        # has the contract's size, two NiNo steps apply, and the applied step is nino_nowcast's
        # with the same description.
        torch.manual_seed(8)
        model = TinyLlama(vocab=16, d=16, layers=2, heads=4, kv_heads=2, ff=24)
        description = nino.describe_llama(model, num_heads=4, num_kv_heads=2)
        opt = make_opt(model, self.server.address, nino_model="nino_no_posw", max_train_steps=40,
                       seed=5, model_description=description)
        status = self.job_status(opt.job_id)
        self.assertEqual((status.graph_state, status.num_nodes, status.num_edges),
                         ("ready",) + graph_size(description, model))
        ids = torch.randint(0, 16, (64, 9), generator=torch.Generator().manual_seed(8))
        rec = NinoStepRecorder()
        before = flat(model)
        for step in range(40):
            batch = ids[(step * 8) % 64:(step * 8) % 64 + 8]
            opt.zero_grad()
            if opt.need_grads:
                logits = model(batch[:, :-1])
                F.cross_entropy(logits.reshape(-1, 16), batch[:, 1:].reshape(-1)).backward()
            rec.before(opt)
            opt.step()
            rec.after(opt, model)
        s = opt.stats
        opt.close()
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (2, 2, 0), s)
        self.assertTrue(torch.isfinite(flat(model)).all())
        self.assertGreater((flat(model) - before).abs().max().item(), 1e-4)
        r = rec.steps[0]
        expected = self.nino_nowcast(model, r["states"], r["k"], 5, description, synthetic_ckpt())
        self.assertLessEqual((r["params"] - expected).abs().max().item(), 1e-6)

    def test_llama_names_with_num_heads_get_the_official_llama_graph(self):
        # Without a description the server maps HF Llama names to the official llama graph,
        # which needs the heads: NowcastOptimizer(num_heads=, num_kv_heads=); without them the
        # job is refused with a message that says so.
        model = TinyLlama(vocab=16, d=16, layers=2, heads=4, kv_heads=2, ff=24)
        with self.assertRaises(nino.NowcasterRefused) as cm:
            make_opt(model, self.server.address)
        self.assertIn("pass num_heads=", str(cm.exception))
        self.assertNotIn("example_input", str(cm.exception))
        opt = make_opt(model, self.server.address, nino_model="nino_no_posw", num_heads=4,
                       num_kv_heads=2)
        status = self.job_status(opt.job_id)
        opt.close()
        # The official graph's closed form (common/nino/llama_graph_test.cc), untied.
        V, d, L, H, KV, ff, hd = 16, 16, 2, 4, 2, 24, 4
        Dq, Dkv = H * hd, KV * hd
        N = V + L * (3 * d + H + Dq + Dkv + ff + 2) + 1 + d + V
        E = V * d + L * (2 * d * Dq + 2 * d * Dkv + Dq + Dkv + 3 * d * ff + 5 * d) + d + V * d + N
        self.assertEqual((status.graph_state, status.num_nodes, status.num_edges), ("ready", N, E))
        with self.assertRaisesRegex(ValueError, "a model description says its heads itself"):
            make_opt(model, self.server.address, num_heads=4,
                     model_description=nino.describe_llama(model, 4, 2))
        with self.assertRaisesRegex(ValueError, r"num_kv_heads \(3\) must divide num_heads"):
            make_opt(model, self.server.address, num_heads=4, num_kv_heads=3)

    def test_unmappable_model_is_refused_with_the_hint(self):
        class Cnn(torch.nn.Module):  # 3x3 convs, then a flatten of 4 channels x 36 positions
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 4, 3)
                self.fc = torch.nn.Linear(4 * 36, 10)

            def forward(self, x):
                return self.fc(torch.relu(self.conv(x)).flatten(1))

        model = Cnn()
        with self.assertRaises(nino.NowcasterRefused) as cm:
            make_opt(model, self.server.address)
        msg = str(cm.exception)
        self.assertIn("no NiNo graph for this layout", msg)
        self.assertIn("pass example_input=", msg)
        batch = images(4, size=8)
        opt = make_opt(model, self.server.address, max_train_steps=20,
                       example_input=batch[0][:4])
        self.assertEqual([op["op"] for op in opt.model_description["ops"]],
                         ["input", "dense", "alias", "flatten", "dense"])
        run(opt, model, batch, 20, size=8)
        s = opt.stats
        opt.close()
        self.assertEqual((s["nino_applied"], s["nino_failures"]), (1, 0), s)

    def test_description_that_does_not_fit_is_refused(self):
        model = LeNet5()
        d = nino.describe_model(model, torch.randn(1, 1, 28, 28))
        # Valid for the client (shapes fit), but 5x5 kernels are too wide for the GNN.
        with self.assertRaises(nino.NowcasterRefused) as cm:
            make_opt(model, self.server.address, model_description=d, nino_model="nino_no_posw")
        self.assertIn("weights per edge", str(cm.exception))
        self.assertNotIn("pass example_input", str(cm.exception))

    @staticmethod
    def nino_nowcast(model, states, k, lpe_seed, description, ckpt):
        """tools/nino_nowcast --model_description on `states` (flat snapshots of `model`)."""
        d = tmpdir()
        names = [n for n, _ in model.named_parameters()]
        shapes = [p.shape for _, p in model.named_parameters()]
        paths = []
        for i, s in enumerate(states):
            sd, off = {}, 0
            for n, shape in zip(names, shapes):
                m = shape.numel()
                sd[n] = s[off:off + m].reshape(shape).clone()
                off += m
            paths.append(os.path.join(d, "state%d.pt" % i))
            torch.save(sd, paths[-1])
        desc = os.path.join(d, "description.json")
        with open(desc, "w") as f:
            json.dump(description, f)
        out = os.path.join(d, "out.pt")
        proc = subprocess.run(
            [nino_nowcast_binary(), "--states", ",".join(paths), "--k", str(k), "--lpe_seed",
             str(lpe_seed), "--nino_model", ckpt, "--model_description", desc, "--threads", "1",
             "--out", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("nino_nowcast failed:\n" + proc.stdout)
        result = torch.load(out)
        return torch.cat([result[n].reshape(-1).to(torch.float32) for n in names])


if __name__ == "__main__":
    unittest.main()
