"""Two torch.distributed processes (Gloo, DistributedDataParallel): rank 0 talks to the
nowcaster, every rank applies the same NiNo steps, or every rank falls back; a refused job
raises on every rank."""

import json
import os
import subprocess
import sys
import unittest

import torch

from nino_test_util import Nowcaster, free_port, tmpdir

STEPS = 45  # NiNo steps at calls 19 and 39 (period 20)


def worker(rank, port, address, out_dir, mode):
    import faulthandler

    import torch.distributed as dist

    faulthandler.dump_traceback_later(90, exit=True)  # a hung rank shows where it hangs

    import nino
    from nino_test_util import MLP, data, flat, loss_at

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=2)
    inner = MLP(seed=0)
    if mode == "refused":
        inner.add_module("conv", torch.nn.Conv2d(1, 2, 5))  # 5x5 kernels: NiNo cannot map it
    model = torch.nn.parallel.DistributedDataParallel(inner)
    if mode == "nan_on_rank1" and rank == 1:  # the prediction arrives damaged on rank 1 only
        real_broadcast = dist.broadcast

        def broadcast(tensor, *args, **kwargs):
            work = real_broadcast(tensor, *args, **kwargs)
            if tensor.numel() > 3:
                tensor[3] = float("nan")
            return work

        dist.broadcast = broadcast
    base = torch.optim.Adam(model.parameters(), lr=1e-2)
    result = {"rank": rank}
    try:
        opt = nino.NowcastOptimizer(base, model, nowcaster=address, period=20,
                                    max_train_steps=100, timeout=10.0)
    except nino.NowcasterRefused as e:
        result["refused"] = str(e)
    else:
        x = data(seed=rank)  # each rank its own shard
        applied = []
        for _ in range(STEPS):
            opt.zero_grad()
            if opt.need_grads:
                loss_at(model, x, opt.step_idx).backward()
            opt.step()
            if opt.last_outcome.nino_step:
                applied.append(opt.last_outcome.applied)
        opt.close()
        result.update(applied=applied, stats=opt.stats, job_id=opt.job_id,
                      names=opt._names, flat=flat(model).tolist())
    with open(os.path.join(out_dir, "rank%d.json" % rank), "w") as f:
        json.dump(result, f)
    dist.barrier()  # no rank leaves while another may still wait for its last message
    # Leave without interpreter teardown: torch 1.13 can deadlock destroying a DDP Reducer at
    # exit (~ProcessGroupGloo joins a Gloo thread that waits for the GIL), seen once here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class DdpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Nowcaster()

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()

    def run_ranks(self, address, mode="train"):
        out = tmpdir()
        port = free_port()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, __file__, "worker", str(r), str(port), address,
                                   out, mode], env=env) for r in (0, 1)]
        for p in procs:
            self.assertEqual(p.wait(timeout=120), 0)
        return [json.load(open(os.path.join(out, "rank%d.json" % r))) for r in (0, 1)]

    def test_every_rank_applies_the_same_nino_steps(self):
        r0, r1 = self.run_ranks(self.server.address)
        self.assertEqual(r0["applied"], [True, True])
        self.assertEqual(r1["applied"], [True, True])
        self.assertEqual(r0["flat"], r1["flat"])  # bit-identical parameters
        self.assertEqual(r0["names"], ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        self.assertEqual(r0["stats"]["registrations"], 1)
        self.assertEqual(r0["stats"]["predictions"], 2)
        self.assertIsNone(r1["job_id"])  # only rank 0 talks to the nowcaster
        self.assertNotIn("predictions", r1["stats"])

    def test_every_rank_falls_back_when_the_nowcaster_is_dead(self):
        r0, r1 = self.run_ranks("127.0.0.1:%d" % free_port())
        self.assertEqual(r0["applied"], [False, False])
        self.assertEqual(r1["applied"], [False, False])
        self.assertEqual(r1["stats"]["nino_failures"], 2)
        self.assertEqual(r0["flat"], r1["flat"])

    def test_a_prediction_damaged_on_one_rank_is_applied_by_none(self):
        r0, r1 = self.run_ranks(self.server.address, mode="nan_on_rank1")
        self.assertEqual(r0["applied"], [False, False])  # rank 0's copy was fine
        self.assertEqual(r1["applied"], [False, False])
        self.assertEqual(r0["stats"]["nino_failures"], 2)
        self.assertEqual(r0["flat"], r1["flat"])  # the ranks stay identical

    def test_a_refused_job_raises_on_every_rank(self):
        r0, r1 = self.run_ranks(self.server.address, mode="refused")
        self.assertIn("no NiNo graph for this layout", r0["refused"])
        self.assertIn("refused", r1["refused"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        unittest.main()
