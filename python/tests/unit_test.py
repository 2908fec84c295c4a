"""The nino package without a nino_nowcaster: CRC-32C, the schedule, the prediction checks,
argument errors, and an in-process fake server (good and corrupted predictions)."""

import random
import unittest

import torch

import nino
from nino import _client, _crc32c
from nino.schedule import horizon_at, horizon_schedule
from nino_test_util import (MLP, FakeNowcaster, adam_reference, data, flat, free_port, make_opt,
                            train)


class Crc32cTest(unittest.TestCase):
    def test_check_value_and_both_implementations(self):
        self.assertEqual(_crc32c.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(_crc32c.crc32c_python(b"123456789"), 0xE3069283)
        self.assertEqual(_crc32c.crc32c(b""), 0)
        rng = random.Random(0)
        for n in (1, 7, 64, 1000, 4099):
            buf = bytes(rng.getrandbits(8) for _ in range(n))
            self.assertEqual(_crc32c.crc32c(buf), _crc32c.crc32c_python(buf), n)
        # Debian's python3-crcmod is what setup installs; the fallback must not be silent there.
        self.assertEqual(_crc32c.IMPLEMENTATION, "crcmod")

    def test_extends(self):
        a, b = b"hello ", b"world"
        self.assertEqual(_crc32c.crc32c_python(b, _crc32c.crc32c_python(a)),
                         _crc32c.crc32c(a + b))


class ScheduleTest(unittest.TestCase):
    def test_official_values(self):
        # NINO_SPEC.md 5.3: n = 1 gives [40]; the schedule falls from 40 to 1.
        self.assertEqual(horizon_schedule(500, 1000), [40])
        s = horizon_schedule(10000, 1000, 2.0)
        self.assertEqual(len(s), 10)
        self.assertEqual(s[0], 40)
        self.assertEqual(s[-1], 1)
        self.assertEqual(s, sorted(s, reverse=True))
        # (sqrt(40) + (1 - sqrt(40)) * 1/9)^2 = 32.87...
        self.assertEqual(s[1], 33)

    def test_horizon_at(self):
        s = horizon_schedule(10000, 1000)
        self.assertEqual(horizon_at(s, 999, 1000), s[0])
        self.assertEqual(horizon_at(s, 1999, 1000), s[1])
        self.assertEqual(horizon_at(s, 10 ** 6, 1000), s[-1])
        self.assertEqual(horizon_at([], 5, 1000), 1)


class AssemblerTest(unittest.TestCase):
    def chunks(self, values, size=8, job="j", step=9, k=3):
        from nino.v1 import nowcaster_pb2 as pb2
        payload = values.numpy().tobytes()
        out = []
        for i, off in enumerate(range(0, len(payload), size)):
            d = payload[off:off + size]
            out.append(pb2.PredictionChunk(job_id=job, step=step, k=k, chunk_index=i,
                                           offset_bytes=off, total_bytes=len(payload), data=d,
                                           crc32c=_crc32c.crc32c(d)))
        return out

    def test_valid_stream(self):
        v = torch.arange(7, dtype=torch.float32)
        a = _client.PredictionAssembler(7)
        for c in self.chunks(v):
            a.add(c)
        self.assertTrue(torch.equal(a.finish(), v))
        self.assertEqual((a.job_id, a.step, a.k), ("j", 9, 3))

    def expect(self, chunks, code, text, num=7):
        a = _client.PredictionAssembler(num)
        with self.assertRaises(_client.NowcastFailure) as cm:
            for c in chunks:
                a.add(c)
            a.finish()
        self.assertEqual(cm.exception.code, code, str(cm.exception))
        self.assertIn(text, str(cm.exception))

    def test_rejections(self):
        v = torch.arange(7, dtype=torch.float32)
        c = self.chunks(v)
        bad = self.chunks(v)
        bad[1].crc32c ^= 1
        self.expect(bad, "DATA_LOSS", "crc32c mismatch")
        self.expect(c[:2], "DATA_LOSS", "stream ended after 16 of 28 bytes")
        self.expect([c[0], c[2]], "INVALID_ARGUMENT", "chunk_index 2, expected 1")
        bad = self.chunks(v)
        bad[1].offset_bytes += 4
        self.expect(bad, "INVALID_ARGUMENT", "offset_bytes 12, expected 8")
        bad = self.chunks(v)
        bad[2].step = 10
        self.expect(bad, "INVALID_ARGUMENT", "differ from the stream's")
        self.expect(c, "INVALID_ARGUMENT", "total_bytes 28, expected 24", num=6)
        bad = self.chunks(v)
        bad[0].data = b""
        bad[0].crc32c = 0
        self.expect(bad, "INVALID_ARGUMENT", "empty data")


class ReplicaOrderTest(unittest.TestCase):
    def test_fnv1a64(self):
        # The published FNV-1a 64 test vectors.
        self.assertEqual(_client.fnv1a64(b""), 0xCBF29CE484222325)
        self.assertEqual(_client.fnv1a64(b"a"), 0xAF63DC4C8601EC8C)
        self.assertEqual(_client.fnv1a64(b"foobar"), 0x85944171F73967E8)
        self.assertEqual(_client.fnv1a64(b"fm16-s1-p1-t1|a:1"), 337454665261071616)

    def test_fixed_vectors_of_the_cpp_definition(self):
        # Computed from the definition (descending fmix64(FNV-1a-64) of "<job_id>|<address>",
        # ties by address); client/remote_nowcaster_test.cc pins the same vectors for C++.
        loopback = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"
        vectors = [
            ("fm16-s1-p1-t1", "a:1,b:2, c:3,,d:4", ["a:1", "d:4", "b:2", "c:3"]),
            ("job-1", loopback, ["127.0.0.1:50051", "127.0.0.1:50053", "127.0.0.1:50052"]),
            ("job-2", loopback, ["127.0.0.1:50053", "127.0.0.1:50052", "127.0.0.1:50051"]),
            ("trainer-s0-p42-t1700000000",
             " 10.0.0.1:7000 , 10.0.0.2:7000,10.0.0.3:7000,10.0.0.4:7000, ",
             ["10.0.0.4:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.1:7000"]),
            ("mnist-run", "h:1,h:2,h:3,h:4,h:5", ["h:1", "h:3", "h:2", "h:4", "h:5"]),
            ("x", "host:1,host:1", ["host:1", "host:1"]),  # a tie: by address
        ]
        self.assertEqual(_client.replica_score("fm16-s1-p1-t1", "a:1"), 16166860272966390669)
        for job, addresses, expected in vectors:
            self.assertEqual(_client.replica_order(job, addresses), expected, job)

    def test_stability(self):
        # The properties C++ ReplicaOrder.RendezvousHashingIsStable checks.
        job = "fm16-s1-p1-t1"
        order = _client.replica_order(job, "a:1,b:2, c:3,,d:4")
        self.assertEqual(len(order), 4)
        self.assertEqual(_client.replica_order(job, "d:4,c:3,b:2,a:1"), order)
        self.assertEqual(_client.replica_order(job, ",".join(order[1:]) + ","), order[1:])
        firsts = {_client.replica_order("job%d" % i, "a:1,b:2,c:3,d:4")[0] for i in range(40)}
        self.assertGreaterEqual(len(firsts), 3)
        # Even over sequential ports: each of 3 replicas comes first for >= 25% of 300 jobs.
        loopback = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"
        firsts = [_client.replica_order("job%d" % i, loopback)[0] for i in range(300)]
        for a in loopback.split(","):
            self.assertGreaterEqual(firsts.count(a), 75, a)
        self.assertEqual(_client.replica_order(job, " , "), [])
        self.assertEqual(_client.split_replicas(" a:1 ,\tb:2,, "), ["a:1", "b:2"])

    def test_registration_skips_an_unavailable_replica(self):
        server = FakeNowcaster("ok")
        dead = "127.0.0.1:%d" % free_port()
        addresses = "%s,%s" % (server.address, dead)
        # A job id whose rendezvous order puts the dead replica first.
        job = next("unit-%d" % i for i in range(100)
                   if _client.replica_order("unit-%d" % i, addresses)[0] == dead)
        try:
            model = MLP()
            opt = make_opt(model, addresses, timeout=5.0, job_id=job)
            self.assertEqual(opt.replicas, [dead, server.address])
            self.assertEqual(opt.replica, server.address)
            train(opt, model, data(), 20, always_backward=True)
            s = opt.stats
            opt.close()
        finally:
            server.stop()
        self.assertEqual((s["failovers"], s["register_failures"], s["registrations"]), (1, 1, 1))
        self.assertEqual((s["nino_applied"], s["context_resends"]), (1, 0))
        self.assertEqual(sorted(server.states), [3, 7, 11, 15, 19])


class ArgumentTest(unittest.TestCase):
    def setUp(self):
        self.model = MLP()
        self.addr = "127.0.0.1:%d" % free_port()  # nothing listens: construction must not care

    def value_error(self, text, **kw):
        with self.assertRaises(ValueError) as cm:
            make_opt(self.model, kw.pop("address", self.addr), **kw)
        self.assertIn(text, str(cm.exception))

    def test_bad_values(self):
        self.value_error("period (1000) must be a multiple of ctx (3)", period=1000, ctx=3)
        self.value_error("period must be >= 1", period=0)
        self.value_error("ctx must be >= 1", ctx=0)
        self.value_error("max_train_steps must be >= 1", max_train_steps=0)
        self.value_error("k_decay must be a number > 0", k_decay=-1.0)
        self.value_error("timeout must be a number of seconds > 0", timeout=0)
        self.value_error("on_error must be 'raise' or 'fallback'", on_error="ignore")
        self.value_error("job_id must be", job_id="bad id with spaces")
        self.value_error("seed must be >= 0", seed=-1)
        self.value_error("nino_model must be a model name", nino_model=3)
        for address in ("localhost", "host:port", "host:0", "host:70000", ":50051", "", " , ,"):
            self.value_error("nowcaster must be 'host:port'", address=address)
        self.value_error("replica 'host' of 'a:1,host' is not 'host:port'", address="a:1,host")
        self.value_error("nowcaster lists a replica twice", address="a:1, a:1")

    def test_replica_lists(self):
        dead = ["127.0.0.1:%d" % free_port() for _ in range(3)]
        opt = make_opt(self.model, " %s ,%s,,%s, " % tuple(dead), timeout=2.0)
        try:
            self.assertEqual(opt.replicas, _client.replica_order(opt.job_id, ",".join(dead)))
            self.assertEqual(sorted(opt.replicas), sorted(dead))
            self.assertIn(opt.replica, dead)
            # Construction tried every replica once (all refuse connections) and went on.
            self.assertEqual(opt.stats["register_failures"], 3)
            self.assertEqual(opt.stats["failovers"], 2)
        finally:
            opt.close()
        single = make_opt(self.model, self.addr, timeout=2.0)
        try:
            self.assertEqual((single.replica, single.replicas), (self.addr, [self.addr]))
            self.assertEqual(single.stats["failovers"], 0)
        finally:
            single.close()

    def test_bad_types(self):
        with self.assertRaisesRegex(TypeError, "optimizer must be a torch.optim.Optimizer"):
            nino.NowcastOptimizer(object(), self.model, nowcaster=self.addr)
        with self.assertRaisesRegex(TypeError, "model must be a torch.nn.Module"):
            nino.NowcastOptimizer(torch.optim.SGD(self.model.parameters(), lr=0.1), [1],
                                  nowcaster=self.addr)
        with self.assertRaisesRegex(TypeError, "period must be an int"):
            make_opt(self.model, self.addr, period=True)
        with self.assertRaisesRegex(TypeError, "nowcaster must be a 'host:port' string"):
            make_opt(self.model, 50051)
        inner = make_opt(self.model, self.addr)
        with self.assertRaisesRegex(TypeError, "already a NowcastOptimizer"):
            nino.NowcastOptimizer(inner, self.model, nowcaster=self.addr)
        inner.close()

    def test_sharded_models_are_refused(self):
        class FakeShard(torch.nn.Module):  # the name FSDP gives its flat parameters
            def __init__(self):
                super().__init__()
                self._fsdp_wrapped_module = torch.nn.Linear(2, 2)

        m = FakeShard()
        with self.assertRaisesRegex(TypeError, "sharded parameters are not supported"):
            nino.NowcastOptimizer(torch.optim.SGD(m.parameters(), lr=0.1), m, nowcaster=self.addr)

    def test_torch_optim_conventions(self):
        opt = make_opt(self.model, self.addr)
        self.assertIsInstance(opt, torch.optim.Optimizer)
        self.assertIs(opt.param_groups, opt.base_optimizer.param_groups)
        self.assertIs(opt.state, opt.base_optimizer.state)
        # An LR scheduler drives the base optimizer's groups through the wrapper.
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        x = data()
        train(opt, self.model, x, 2, always_backward=True)
        sched.step()
        self.assertAlmostEqual(opt.base_optimizer.param_groups[0]["lr"], 5e-3)
        opt.zero_grad(set_to_none=True)
        self.assertTrue(all(p.grad is None for p in self.model.parameters()))
        loss = opt.step(lambda: torch.tensor(1.5))
        self.assertEqual(float(loss), 1.5)
        opt.close()


class FakeServerTest(unittest.TestCase):
    """Period 20, ctx 5: snapshots at calls 3, 7, 11, 15, 19; call 19 is the NiNo step."""

    def run_mode(self, mode, steps=25):
        server = FakeNowcaster(mode)
        try:
            model = MLP()
            opt = make_opt(model, server.address, timeout=5.0)
            x = data()
            history = {}

            def before(o):
                if not o.need_grads:
                    history["states"] = [h.clone() for h in o.state_dict()["nino"]["history"]]
                    history["last"] = o.flat_params()

            train(opt, model, x, steps, always_backward=True, before_step=before)
            opt.close()
            return server, model, opt, history
        finally:
            server.stop()

    def test_good_prediction_is_applied_and_uploads_match_the_history(self):
        server, model, opt, history = self.run_mode("ok", steps=20)
        self.assertEqual(sorted(server.states), [3, 7, 11, 15, 19])
        self.assertEqual(opt.stats["nino_applied"], 1)
        self.assertEqual(opt.last_outcome.k, horizon_at(horizon_schedule(100, 20), 19, 20))
        for st, h in zip([3, 7, 11, 15], history["states"]):
            self.assertTrue(torch.equal(server.states[st], h), st)
        self.assertTrue(torch.equal(server.states[19], history["last"]))
        self.assertTrue(torch.equal(flat(model), history["last"] + 0.01))
        req = server.registrations[0]
        self.assertEqual([p.name for p in req.params], ["fc1.weight", "fc1.bias", "fc2.weight",
                                                        "fc2.bias"])
        self.assertEqual(req.graph.kind, "auto")
        self.assertEqual((req.period, req.ctx, req.max_train_steps), (20, 5, 100))

    def test_corrupt_predictions_fall_back_to_the_base_step(self):
        reference = adam_reference(25)
        for mode in ("bad_crc", "nan", "wrong_k", "wrong_step", "wrong_job", "short",
                     "bad_offset"):
            with self.subTest(mode=mode):
                server, model, opt, _ = self.run_mode(mode)
                self.assertEqual(server.predicts, 1, mode)
                s = opt.stats
                self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]),
                                 (1, 0, 1), mode)
                self.assertTrue(opt.last_outcome is not None)
                # The fallback is exactly the base optimizer's step: no wrong weight applied.
                self.assertTrue(torch.equal(flat(model), reference), mode)


if __name__ == "__main__":
    unittest.main()
