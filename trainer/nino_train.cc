// nino_train: one data-parallel training worker (torchrun style). Start it once per worker with
// RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK in the environment (torchrun
// --no-python, srun and Kubernetes do this), or without them for a single process.
//
//   nino_train --task fm16 --nino_ckpt default --out_dir runs/fm16-nino  # our built-in model
//   nino_train --task fm16 --nino_ckpt nino_no_posw --out_dir runs/fm16-official
//   nino_train --task fm16 --out_dir runs/fm16-adam                   # plain Adam
//   nino_train --task fm16 --nowcaster 127.0.0.1:50051 --out_dir runs/fm16-remote  # NiNo steps
//                                                      # on a nino_nowcaster daemon
#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/nino/tuning_flags.h"
#include "common/runtime/allocator.h"
#include "common/runtime/list_flags.h"
#include "trainer/task.h"
#include "trainer/trainer.h"

ABSL_FLAG(std::string, task, "fm16", "fm16, fm32, mlp or lm");
ABSL_FLAG(int64_t, steps, 10000, "maximum training steps (also sets NiNo's horizon schedule)");
ABSL_FLAG(uint64_t, seed, 1000,
          "seed of the weights and the batch order (same for Adam and NiNo runs)");
ABSL_FLAG(double, lr, 0, "learning rate (0: the task's default)");
ABSL_FLAG(std::string, optimizer, "adamw",
          "adamw (weight decay 0 = Adam, the official setting) or sgd");
ABSL_FLAG(int64_t, batch, 0, "global batch size over all workers (0: the task's default)");
ABSL_FLAG(std::string, nino_ckpt, "",
          "NiNo steps in-process with this model: 'default' (the project's own, built in), an "
          "official name (nino_no_posw, nino_mlp, nino_mlp_h32: cache, download, ../shared) or "
          "a checkpoint file; empty or 'none': plain Adam");
ABSL_FLAG(
    std::string, nowcaster, "",
    "host:port of a nino_nowcaster, or several comma-separated replicas (rendezvous placement, "
    "failover): NiNo steps run there instead of in-process (rank 0 "
    "streams the snapshots; a failed or late nowcast becomes an ordinary optimizer step)");
ABSL_FLAG(std::string, nowcaster_tls_ca, "",
          "--nowcaster over TLS: PEM CA bundle that verifies the nowcaster's certificate");
ABSL_FLAG(std::string, nowcaster_tls_cert, "",
          "--nowcaster mutual TLS: PEM client certificate chain (with --nowcaster_tls_key)");
ABSL_FLAG(std::string, nowcaster_tls_key, "", "--nowcaster mutual TLS: PEM client key");
ABSL_FLAG(std::string, nowcaster_tls_server_name, "",
          "--nowcaster TLS: name the server certificate must carry (default: the address's "
          "host, or the DNS name an address was resolved from)");
ABSL_FLAG(std::string, auth_token_file, "",
          "--nowcaster: file whose first line is the bearer token sent with every call (a "
          "nowcaster with --auth_tokens_file)");
ABSL_FLAG(int64_t, nowcaster_timeout_ms, 60000,
          "--nowcaster: deadline of one NiNo step, uploads + Predict (1..100000)");
ABSL_FLAG(std::string, nino_model, "",
          "--nowcaster: name of the NiNo model the server runs (empty: the server's default, "
          "the built-in model unless it was started with other --nino_model)");
ABSL_FLAG(int64_t, period, 1000, "steps between NiNo steps");
ABSL_FLAG(int64_t, ctx, 5, "parameter states per NiNo step (period/ctx steps apart)");
ABSL_FLAG(double, k_decay, 2.0, "exponent p of the horizon schedule");
ABSL_FLAG(bool, nino_reset_adam, false,
          "clear the optimizer's state (Adam moments and step count) after each applied NiNo "
          "step; default: keep it (official)");
ABSL_FLAG(bool, nino_reset_momentum, false,
          "zero only the optimizer's first moment (Adam exp_avg / SGD momentum) after each "
          "applied NiNo step, keeping the second moment and step count: a short warm-up after "
          "the jump; excludes --nino_reset_adam");
ABSL_FLAG(std::vector<std::string>, nino_step_search, {},
          "scales tried along each nowcast on a held-out probe batch, e.g. 1,0.5,0.25,0 (the "
          "lowest probe loss wins; 0 = keep the parameters); empty: apply as predicted");
ABSL_FLAG(int64_t, eval_every, 50, "evaluate every N steps (0: only at the end)");
ABSL_FLAG(int64_t, log_every, 100, "progress line every N steps");
ABSL_FLAG(std::string, out_dir, "",
          "run folder: metrics.jsonl, checkpoint.pt, summary.json (default "
          "runs/<task>-<adam|nino>-s<seed>)");
ABSL_FLAG(int64_t, checkpoint_every, 1000, "checkpoint every N steps (0: only at the end)");
ABSL_FLAG(bool, resume, true, "continue from <out_dir>/checkpoint.pt when it exists");
ABSL_FLAG(bool, stop_at_target, true, "stop once the validation metric reaches the task's target");
ABSL_FLAG(int, threads, 0, "LibTorch threads per worker (0: cores / local workers)");
ABSL_FLAG(std::string, data_dir, "",
          "FashionMNIST folder (default /usr/share/datasets/fashion-mnist)");
ABSL_FLAG(std::string, text_cache, "",
          "lm: where the KJV text is cached (default /tmp/nino_kjv.txt)");
ABSL_FLAG(int64_t, eval_limit, 0, "evaluate on the first N examples only (0: all)");
ABSL_FLAG(int64_t, kernel_size, 0,
          "fm16 / fm32: conv kernel size, odd (0: the official 3; 5 makes 25 weights per edge)");
ABSL_FLAG(int64_t, testonly_crash_at_step, -1,
          "TEST ONLY: exit abruptly (status 3, no clean-up, no final checkpoint) after this step");
ABSL_FLAG(bool, quiet, false, "no progress lines");
ABSL_FLAG(
    std::string, record_dir, "",
    "record the parameter trajectory (float16 snapshots + manifest.json) into this folder, for "
    "meta-training (nino_trajectories lists and checks such folders)");
ABSL_FLAG(int64_t, record_every, 0,
          "--record_dir: steps between snapshots (0: 4 for vision tasks, 200 for lm)");

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("Data-parallel training with NiNo steps (torchrun-style worker).");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (absl::Status s = nino::runtime::AccumulateListFlags(argc, argv, {"nino_step_search"});
      !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (rest.size() > 1) {
    std::fprintf(stderr, "error: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  nino::trainer::TrainOptions o;
  o.task = absl::GetFlag(FLAGS_task);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.lr = absl::GetFlag(FLAGS_lr);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.optimizer = absl::GetFlag(FLAGS_optimizer);
  o.nino_ckpt = absl::GetFlag(FLAGS_nino_ckpt);
  o.nowcaster = absl::GetFlag(FLAGS_nowcaster);
  o.nowcaster_timeout_ms = absl::GetFlag(FLAGS_nowcaster_timeout_ms);
  o.nowcaster_tls_ca = absl::GetFlag(FLAGS_nowcaster_tls_ca);
  o.nowcaster_tls_cert = absl::GetFlag(FLAGS_nowcaster_tls_cert);
  o.nowcaster_tls_key = absl::GetFlag(FLAGS_nowcaster_tls_key);
  o.nowcaster_tls_server_name = absl::GetFlag(FLAGS_nowcaster_tls_server_name);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.nino_model = absl::GetFlag(FLAGS_nino_model);
  o.period = absl::GetFlag(FLAGS_period);
  o.ctx = absl::GetFlag(FLAGS_ctx);
  o.k_decay = absl::GetFlag(FLAGS_k_decay);
  o.nino_reset_adam = absl::GetFlag(FLAGS_nino_reset_adam);
  o.nino_reset_momentum = absl::GetFlag(FLAGS_nino_reset_momentum);
  for (const std::string& s : absl::GetFlag(FLAGS_nino_step_search)) {
    double v = 0;
    if (!absl::SimpleAtod(s, &v)) {
      std::fprintf(stderr, "error: --nino_step_search: '%s' is not a number\n", s.c_str());
      return 2;
    }
    o.nino_step_search.push_back(v);
  }
  o.eval_every = absl::GetFlag(FLAGS_eval_every);
  o.log_every = absl::GetFlag(FLAGS_log_every);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  o.resume = absl::GetFlag(FLAGS_resume);
  o.stop_at_target = absl::GetFlag(FLAGS_stop_at_target);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.text_cache = absl::GetFlag(FLAGS_text_cache);
  o.eval_limit = absl::GetFlag(FLAGS_eval_limit);
  o.kernel_size = absl::GetFlag(FLAGS_kernel_size);
  if (const int64_t crash = absl::GetFlag(FLAGS_testonly_crash_at_step); crash >= 0) {
    o.after_step = [crash](int64_t step) {
      if (step != crash) return;
      std::fflush(stdout);
      std::_Exit(3);  // a kill with no chance to clean up
    };
  }
  o.nino_tuning = nino::TuningFromFlags(o.seed);
  o.quiet = absl::GetFlag(FLAGS_quiet);
  o.record_dir = absl::GetFlag(FLAGS_record_dir);
  o.record_every = absl::GetFlag(FLAGS_record_every);
  if (o.out_dir.empty()) {
    o.out_dir =
        absl::StrCat("runs/", o.task, nino::trainer::UsesNino(o) ? "-nino" : "-adam", "-s", o.seed);
  }
  bool known = false;
  for (const auto& t : nino::trainer::TaskNames()) known |= t == o.task;
  if (!known) {
    std::fprintf(stderr, "error: unknown --task '%s' (known: %s)\n", o.task.c_str(),
                 absl::StrJoin(nino::trainer::TaskNames(), ", ").c_str());
    return 2;
  }
  auto r = nino::trainer::RunTraining(o);
  if (!r.ok()) {
    std::fprintf(stderr, "error: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "done: %lld steps in %.1f s (%.1f steps/s), %s; NiNo steps %lld (%lld failed); out %s\n",
      static_cast<long long>(r->steps_done), r->seconds, r->steps_per_second,
      r->reached_at >= 0 ? absl::StrCat("target reached at step ", r->reached_at).c_str()
                         : "target not reached",
      static_cast<long long>(r->nino_steps), static_cast<long long>(r->nino_failures),
      o.out_dir.c_str());
  return 0;
}
