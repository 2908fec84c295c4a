"""Failover across nowcaster replicas (the Python side of C++ RemoteNowcasterTest's
AKilledReplicaSendsTheJobToTheNextOne and AReplicaWithoutMemoryPassesTheJobOn): real
nino_nowcaster processes on loopback serving the synthetic checkpoint, NowcastOptimizer with
nowcaster="a,b,c". A replica killed (SIGKILL) mid-run sends the job to the next one in its
rendezvous order, where the context is resent: every NiNo step is still applied, with the
same weights as an uninterrupted run. A replica without memory for the job passes it on."""

import time
import unittest

from nino import _client
from nino_test_util import (MLP, Nowcaster, NinoStepRecorder, data, flat, make_opt,
                            nino_nowcast, run_recorded)


def wait_idle(opt, timeout=10.0):
    """Waits until the background uploads are done (so a kill hits the NiNo step itself)."""
    deadline = time.monotonic() + timeout
    while not opt._client.idle():
        if time.monotonic() > deadline:
            raise AssertionError("the snapshot uploads did not finish")
        time.sleep(0.01)


def job_id_with_first(addresses, first, prefix):
    """A job id whose rendezvous order over `addresses` starts with `first`."""
    for i in range(1000):
        job = "%s-%d" % (prefix, i)
        if _client.replica_order(job, addresses)[0] == first:
            return job
    raise AssertionError("no job id puts %s first" % first)


class FailoverTest(unittest.TestCase):
    def test_killed_replicas_send_the_job_to_the_next_one(self):
        servers = [Nowcaster() for _ in range(3)]
        try:
            by_address = {s.address: s for s in servers}
            addresses = ",".join(s.address for s in servers)
            x = data()

            # The uninterrupted run (its own job on the same replicas): NiNo steps 19, 39, 59.
            ref_model = MLP()
            ref = make_opt(ref_model, addresses, job_id="failover-ref")
            ref_rec = NinoStepRecorder()
            run_recorded(ref, ref_model, x, 65, ref_rec)
            ref.close()
            self.assertEqual([r["applied"] for r in ref_rec.steps], [True] * 3, ref.stats)
            self.assertEqual(ref.stats["failovers"], 0)

            model = MLP()
            opt = make_opt(model, " %s , " % addresses.replace(",", " ,"), job_id="failover-run")
            order = _client.replica_order("failover-run", addresses)
            self.assertEqual(opt.replicas, order)
            self.assertEqual(opt.replica, order[0])
            served_by = {}  # NiNo step -> the replica the job was on right after it
            killed = []

            def between(step):
                if step in (20, 40, 60):
                    served_by[step - 1] = opt.replica
                if step == 26:
                    # Between NiNo steps (snapshot 23 is on the replica): the upload of snapshot
                    # 27 finds it gone and moves the job on; the NiNo step of call 39 resends.
                    killed.append(opt.replica)
                    by_address[opt.replica].kill()
                if step == 59:
                    # Right before a NiNo step, uploads done: its own PutState finds the replica
                    # gone, moves the job to the next one and resends the whole context there.
                    wait_idle(opt)
                    killed.append(opt.replica)
                    by_address[opt.replica].kill()

            rec = NinoStepRecorder()
            t0 = time.monotonic()
            run_recorded(opt, model, x, 65, rec, between=between)
            elapsed = time.monotonic() - t0
            served_by[59] = opt.replica
            s = opt.stats
            opt.close()
        finally:
            for server in servers:
                server.kill()
        self.assertEqual(killed, order[:2])
        self.assertEqual(served_by, {19: order[0], 39: order[1], 59: order[2]})
        self.assertEqual(opt.replica, order[2])
        fallbacks = [r["step_idx"] for r in rec.steps if not r["applied"]]
        self.assertEqual(fallbacks, [], [(r["step_idx"], r["error"]) for r in rec.steps])
        self.assertEqual((s["nino_steps"], s["nino_applied"], s["nino_failures"]), (3, 3, 0), s)
        self.assertGreaterEqual(s["failovers"], 2, s)
        self.assertEqual(s["context_resends"], 2, s)  # once per move, at the next NiNo step
        self.assertEqual(s["prediction_failures"], 0, s)
        self.assertLess(elapsed, 30.0)
        # Every NiNo step used the same snapshots and applied the same weights as the
        # uninterrupted run.
        for got, want in zip(rec.steps, ref_rec.steps):
            self.assertEqual((got["step_idx"], got["k"]), (want["step_idx"], want["k"]))
            self.assertLessEqual((got["params"] - want["params"]).abs().max().item(), 1e-6,
                                 got["step_idx"])
        self.assertLessEqual((flat(model) - flat(ref_model)).abs().max().item(), 1e-6)

    def test_a_replica_without_memory_passes_the_job_on(self):
        small = Nowcaster(extra=["--memory_budget_bytes=1024"])
        big = Nowcaster()
        try:
            addresses = "%s,%s" % (big.address, small.address)
            job = job_id_with_first(addresses, small.address, "failover-mem")
            model = MLP()
            with self.assertLogs("nino", "WARNING") as logs:
                opt = make_opt(model, addresses, job_id=job)
            self.assertTrue(any("RESOURCE_EXHAUSTED" in m and "moves from replica %s to %s" %
                                (small.address, big.address) in m for m in logs.output),
                            logs.output)
            # Registered at construction: the small replica refused (RESOURCE_EXHAUSTED), the
            # big one took the job.
            self.assertEqual(opt.replicas, [small.address, big.address])
            self.assertEqual(opt.replica, big.address)
            s = opt.stats
            self.assertEqual((s["failovers"], s["register_failures"], s["registrations"]),
                             (1, 1, 1), s)
            rec = NinoStepRecorder()
            run_recorded(opt, model, data(), 25, rec)
            s = opt.stats
            opt.close()
        finally:
            small.kill()
            big.kill()
        self.assertEqual(opt.replica, big.address)
        self.assertEqual(s["failovers"], 1, s)
        self.assertEqual(s["context_resends"], 0, s)
        self.assertEqual([r["applied"] for r in rec.steps], [True], s)
        r = rec.steps[0]
        expected = nino_nowcast(model, r["states"], r["k"], lpe_seed=0)
        self.assertLessEqual((r["params"] - expected).abs().max().item(), 1e-6)


if __name__ == "__main__":
    unittest.main()
