"""A nowcaster that is dead, stalled (never answers / SIGSTOP) or restarted mid-run never stops
training: the NiNo step falls back to exactly the base optimizer's step, or it is served after
re-registration with exactly the right weights."""

import time
import unittest

import torch

from nino_test_util import (MLP, FakeNowcaster, Nowcaster, NinoStepRecorder, adam_reference,
                            data, flat, free_port, make_opt, nino_nowcast, run_recorded)


class FaultsTest(unittest.TestCase):
    def test_dead_nowcaster(self):
        model = MLP()
        t0 = time.monotonic()
        opt = make_opt(model, "127.0.0.1:%d" % free_port(), timeout=5.0)
        rec = NinoStepRecorder()
        run_recorded(opt, model, data(), 45, rec, always_backward=True)
        opt.close()
        self.assertLess(time.monotonic() - t0, 20.0)
        s = opt.stats
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (2, 0, 2))
        self.assertGreaterEqual(s["register_failures"], 2)
        self.assertTrue(all("UNAVAILABLE" in r["error"] for r in rec.steps), rec.steps)
        # Both NiNo steps were ordinary Adam steps: the run equals plain Adam bit for bit.
        self.assertTrue(torch.equal(flat(model), adam_reference(45)))

    def test_predict_that_never_answers(self):
        server = FakeNowcaster("hang")
        try:
            model = MLP()
            opt = make_opt(model, server.address, timeout=1.5)
            rec = NinoStepRecorder()
            t0 = time.monotonic()
            run_recorded(opt, model, data(), 25, rec, always_backward=True)
            elapsed = time.monotonic() - t0
            opt.close()
        finally:
            server.stop()
        self.assertEqual(server.predicts, 1)
        self.assertEqual(len(rec.steps), 1)
        self.assertFalse(rec.steps[0]["applied"])
        self.assertIn("DEADLINE_EXCEEDED", rec.steps[0]["error"])
        self.assertLess(elapsed, 1.5 + 5.0)  # the timeout, plus 25 small steps on a busy machine
        self.assertTrue(torch.equal(flat(model), adam_reference(25)))

    def test_sigstopped_then_continued_nowcaster(self):
        server = Nowcaster()
        try:
            model = MLP()
            opt = make_opt(model, server.address, timeout=2.0)
            rec = NinoStepRecorder()
            x = data()
            run_recorded(opt, model, x, 10, rec)  # registered, snapshots 3 and 7 uploaded
            server.pause()
            t0 = time.monotonic()
            run_recorded(opt, model, x, 15, rec)  # calls 10..24: the NiNo step of call 19
            stalled = time.monotonic() - t0
            server.resume()
            run_recorded(opt, model, x, 20, rec)  # calls 25..44: the NiNo step of call 39
            opt.close()
        finally:
            server.kill()
        # Uploads never block training (two blocked uploads would add 2 x 2 s); the NiNo step
        # gave up after its timeout.
        self.assertLess(stalled, 2.0 + 3.5)
        self.assertEqual([r["step_idx"] for r in rec.steps], [19, 39])
        self.assertFalse(rec.steps[0]["applied"])
        self.assertTrue(rec.steps[1]["applied"], opt.stats)
        r = rec.steps[1]
        expected = nino_nowcast(model, r["states"], r["k"], lpe_seed=0)
        self.assertLessEqual((r["params"] - expected).abs().max().item(), 1e-6)

    def test_restarted_nowcaster(self):
        x = data()
        server = Nowcaster()
        try:
            ref_model = MLP()
            ref = make_opt(ref_model, server.address)
            run_recorded(ref, ref_model, x, 45, NinoStepRecorder())
            ref.close()
            self.assertEqual(ref.stats["nino_applied"], 2)

            model = MLP()
            opt = make_opt(model, server.address)
            rec = NinoStepRecorder()
            # Killed (SIGKILL: every job forgotten) and started again on the same port after
            # call 25: the snapshots of calls 23 (old server), 27.. (new server) are split.
            run_recorded(opt, model, x, 45, rec,
                         between=lambda step: server.restart() if step == 26 else None)
            opt.close()
        finally:
            server.kill()
        self.assertEqual([r["applied"] for r in rec.steps], [True, True], opt.stats)
        s = opt.stats
        self.assertGreaterEqual(s["registrations"], 2)
        self.assertEqual(s["nino_failures"], 0)
        # Served after re-registration with the same weights as the uninterrupted run.
        self.assertLessEqual((flat(model) - flat(ref_model)).abs().max().item(), 1e-6)


if __name__ == "__main__":
    unittest.main()
