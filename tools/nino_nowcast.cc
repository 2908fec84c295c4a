// nino_nowcast: the offline NiNo step. Five checkpoints of one model in (oldest first, period/ctx
// training steps apart), the nowcast checkpoint out; see tools/offline_nowcast.h.
//
//   nino_nowcast --states s600.pt,s800.pt,s1000.pt,s1200.pt,s1400.pt --step 1400 --out
//   s1400_nino.pt nino_nowcast --states ... --k 40 --graph gpt2 --num_heads 4 --out nowcast.pt
//   nino_nowcast --states ... --step 1400 --model_description lenet.json --out nowcast.pt
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/nino/tuning_flags.h"
#include "common/runtime/allocator.h"
#include "common/runtime/list_flags.h"
#include "common/runtime/threads.h"
#include "tools/offline_nowcast.h"

ABSL_FLAG(std::vector<std::string>, states, {},
          "the 5 parameter checkpoints, oldest first (comma-separated)");
ABSL_FLAG(std::string, out, "",
          "output checkpoint (the newest input with the predicted parameters)");
ABSL_FLAG(std::string, nino_model, "default",
          "NiNo model: default (the project's own, built in), an official name (nino_no_posw, "
          "nino_mlp, nino_mlp_h32: cache, download, ../shared) or a checkpoint file");
ABSL_FLAG(std::string, nino_ckpt, "", "deprecated alias of --nino_model (a file or a name)");
ABSL_FLAG(bool, allow_download, true, "download an official checkpoint if not cached");
ABSL_FLAG(std::string, graph, "auto",
          "auto (from the parameter names), generic, gpt2, llama, or described (with "
          "--model_description)");
ABSL_FLAG(std::string, model_description, "",
          "a model description, JSON (docs/GRAPH_DESCRIPTION.md): the graph is built from it "
          "instead of from the parameter names (implies --graph described)");
ABSL_FLAG(int64_t, num_heads, 0, "attention heads (GPT-2, Llama)");
ABSL_FLAG(int64_t, num_kv_heads, 0, "Llama key/value heads (0 = num_heads)");
ABSL_FLAG(int, k, 0, "horizon in units of period/ctx steps, 1..40 (0: the schedule at --step)");
ABSL_FLAG(int64_t, step, 0, "training step of the newest checkpoint (for the schedule)");
ABSL_FLAG(int64_t, period, 1000, "steps between NiNo steps");
ABSL_FLAG(int64_t, max_train_steps, 10000, "the run's length (sets the schedule)");
ABSL_FLAG(double, k_decay, 2.0, "exponent p of the schedule");
ABSL_FLAG(uint64_t, lpe_seed, 0, "positional-encoding sign seed");
ABSL_FLAG(int, threads, 0, "LibTorch threads (0 = all cores)");

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("Offline NiNo step: 5 checkpoints in, the nowcast checkpoint out.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (absl::Status s = nino::runtime::AccumulateListFlags(argc, argv, {"states"}); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (rest.size() > 1) {
    std::fprintf(stderr, "error: unexpected argument '%s' (use --states a,b,c,d,e)\n", rest[1]);
    return 2;
  }
  const int threads = nino::runtime::ThreadsOrAllCores(absl::GetFlag(FLAGS_threads));
  at::set_num_threads(threads);

  nino::tools::OfflineNowcastOptions o;
  o.states = absl::GetFlag(FLAGS_states);
  o.out = absl::GetFlag(FLAGS_out);
  o.nino_model = absl::GetFlag(FLAGS_nino_ckpt).empty() ? absl::GetFlag(FLAGS_nino_model)
                                                        : absl::GetFlag(FLAGS_nino_ckpt);
  o.allow_download = absl::GetFlag(FLAGS_allow_download);
  o.graph = absl::GetFlag(FLAGS_graph);
  o.model_description = absl::GetFlag(FLAGS_model_description);
  o.num_heads = absl::GetFlag(FLAGS_num_heads);
  o.num_kv_heads = absl::GetFlag(FLAGS_num_kv_heads);
  o.k = absl::GetFlag(FLAGS_k);
  o.step = absl::GetFlag(FLAGS_step);
  o.period = absl::GetFlag(FLAGS_period);
  o.max_train_steps = absl::GetFlag(FLAGS_max_train_steps);
  o.k_decay = absl::GetFlag(FLAGS_k_decay);
  o.lpe_seed = absl::GetFlag(FLAGS_lpe_seed);
  o.tuning = nino::TuningFromFlags(o.lpe_seed);
  auto r = nino::tools::RunOfflineNowcast(o);
  if (!r.ok()) {
    std::fprintf(stderr, "error: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "wrote %s: %lld parameters nowcast with k=%d (%s graph, %lld edges, NiNo %s); mean |change| "
      "%.4g\n",
      o.out.c_str(), static_cast<long long>(r->num_params), r->k,
      nino::GraphKindName(r->graph.kind).c_str(), static_cast<long long>(r->num_edges),
      o.nino_model.c_str(), r->mean_abs_change);
  if (!r->kept.empty()) std::printf("kept unchanged: %s\n", absl::StrJoin(r->kept, ", ").c_str());
  return 0;
}
