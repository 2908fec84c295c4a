"""NowcastOptimizer against a real nino_nowcaster (synthetic checkpoint): the applied NiNo
steps equal the C++ in-process nino_nowcast on the same snapshots, the horizon schedule equals
the server's, a resumed run continues exactly, refused jobs raise or fall back."""

import os
import unittest

import torch

import nino
from nino import _client
from nino.schedule import horizon_at, horizon_schedule
from nino_test_util import (MLP, Nowcaster, NinoStepRecorder, adam_reference, data, flat,
                            make_opt, nino_nowcast, run_recorded, tmpdir, train)


class NowcasterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Nowcaster()

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()

    def test_applied_steps_equal_the_in_process_nino_nowcast(self):
        model = MLP()
        opt = make_opt(model, self.server.address, max_train_steps=60, seed=3)
        rec = NinoStepRecorder()
        run_recorded(opt, model, data(), 60, rec)
        opt.close()
        self.assertEqual([r["step_idx"] for r in rec.steps], [19, 39, 59])
        self.assertTrue(all(r["applied"] for r in rec.steps), opt.stats)
        schedule = horizon_schedule(60, 20)
        self.assertEqual([r["k"] for r in rec.steps], [horizon_at(schedule, s, 20)
                                                       for s in (19, 39, 59)])
        self.assertEqual(len(set(r["k"] for r in rec.steps)), 3)  # 40, a middle k, 1
        for r in (rec.steps[0], rec.steps[2]):
            expected = nino_nowcast(model, r["states"], r["k"], lpe_seed=3)
            diff = (r["params"] - expected).abs().max().item()
            self.assertLessEqual(diff, 1e-6, "step %d" % r["step_idx"])
            # NiNo moved the weights far more than the tolerance: the check can fail.
            moved = (r["params"] - r["states"][-1]).abs().max().item()
            print("NiNo step %d (k=%d): max |python - nino_nowcast| = %.3g, max |step| = %.3g" %
                  (r["step_idx"], r["k"], diff, moved))
            self.assertGreater(moved, 1e-4, "step %d" % r["step_idx"])
        # The seed is the LPE sign seed: another seed gives another prediction.
        other = nino_nowcast(model, rec.steps[0]["states"], rec.steps[0]["k"], lpe_seed=4)
        self.assertGreater((rec.steps[0]["params"] - other).abs().max().item(), 1e-6)
        s = opt.stats
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (3, 3, 0))
        self.assertEqual((s["registrations"], s["context_resends"], s["upload_failures"]),
                         (1, 0, 0))
        self.assertEqual(s["uploads"], 15)

    def test_schedule_equals_the_servers(self):
        for steps, period, p in ((10000, 1000, 2.0), (3000, 1000, 2.0), (100, 20, 2.0),
                                 (7777, 300, 1.5), (500, 1000, 2.0), (123456, 1000, 3.0),
                                 (20000, 40, 0.7)):
            with self.subTest(steps=steps, period=period, p=p):
                c = _client.RemoteNowcaster(
                    self.server.address, "sched-%d-%d-%s" % (steps, period, p),
                    [("fc.0.weight", (8, 4), 1), ("fc.0.bias", (8,), 1),
                     ("fc.1.weight", (3, 8), 1), ("fc.1.bias", (3,), 1)], "nino_no_posw", period, 5,
                    steps, p, 0, 10.0)
                try:
                    c.register(10.0)
                    self.assertEqual(c.server_k_schedule, horizon_schedule(steps, period, p))
                finally:
                    c.close()

    def test_resume_continues_exactly(self):
        x = data()
        path = os.path.join(tmpdir(), "ckpt.pt")
        full_model = MLP()
        full = make_opt(full_model, self.server.address, seed=1)
        train(full, full_model, x, 70)
        full.close()
        self.assertEqual(full.stats["nino_applied"], 3)

        model = MLP()
        opt = make_opt(model, self.server.address, seed=1)
        train(opt, model, x, 30)  # snapshots of calls 23 and 27 held
        self.assertEqual(len(opt.state_dict()["nino"]["history"]), 2)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
        opt.close()

        model2 = MLP(seed=99)
        opt2 = make_opt(model2, self.server.address, seed=1)
        ckpt = torch.load(path)
        model2.load_state_dict(ckpt["model"])
        opt2.load_state_dict(ckpt["opt"])
        self.assertEqual(opt2.step_idx, 30)
        train(opt2, model2, x, 40)
        opt2.close()
        s = opt2.stats
        self.assertEqual((s["nino_applied"], s["nino_failures"]), (2, 0))
        # The restored snapshots went to the server in order: no resend was needed.
        self.assertEqual(s["context_resends"], 0)
        self.assertLessEqual((flat(model2) - flat(full_model)).abs().max().item(), 1e-7)

    def test_state_dict_is_validated(self):
        model = MLP()
        opt = make_opt(model, self.server.address)
        sd = opt.state_dict()
        with self.assertRaisesRegex(ValueError, "expected keys 'base' and 'nino'"):
            opt.load_state_dict(sd["base"])
        other = make_opt(MLP(), self.server.address, period=40)
        with self.assertRaisesRegex(ValueError, "saved with period=20, this optimizer has 40"):
            other.load_state_dict(sd)
        sd["nino"]["history"] = [torch.zeros(3)]
        with self.assertRaisesRegex(ValueError, "does not have 676 values"):
            opt.load_state_dict(sd)
        opt.close()
        other.close()

    def test_refused_jobs_raise_or_fall_back(self):
        class BigKernels(torch.nn.Module):  # 5x5 kernels: more feature slots than NiNo takes
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 4, 5)
                self.fc = torch.nn.Linear(4, 2)

        model = BigKernels()
        with self.assertRaises(nino.NowcasterRefused) as cm:
            make_opt(model, self.server.address)
        self.assertIn("INVALID_ARGUMENT", str(cm.exception))
        self.assertIn("no NiNo graph for this layout", str(cm.exception))
        with self.assertRaisesRegex(nino.NowcasterRefused, "nino_model 'nope' is not served"):
            make_opt(MLP(), self.server.address, nino_model="nope")

        # on_error="fallback": the base optimizer alone, exactly.
        with self.assertLogs("nino", level="WARNING") as logs:
            model = MLP()
            opt = make_opt(model, self.server.address, nino_model="nope", on_error="fallback")
        self.assertIn("on_error='fallback'", "\n".join(logs.output))
        self.assertFalse(opt.active)
        train(opt, model, data(), 45)
        self.assertTrue(torch.equal(flat(model), adam_reference(45)))
        self.assertEqual(opt.stats["nino_steps"], 0)


if __name__ == "__main__":
    unittest.main()
