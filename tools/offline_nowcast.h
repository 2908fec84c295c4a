// The offline NiNo step (the official nino_step.py use case): 5 parameter checkpoints of one
// model, period/ctx steps apart, in, the nowcast checkpoint out.
//
// Inputs are torch.save files: a bare state dict (`torch.save(model.state_dict(), f)`), or a
// dict holding it under "model" (the official train_vision.py step files and our nino_train
// checkpoint.pt). The parameter layout is the state dict itself: floating-point entries in
// file order are the parameters (buffers such as BatchNorm running statistics are kept as they
// are and not nowcast), the graph kind is inferred from their names (or given), attention
// models add their head counts. A model the names cannot map (pooling and flatten between
// layers, residual blocks, ...) comes with a model description instead: a JSON file
// (docs/GRAPH_DESCRIPTION.md) naming the state dict's parameters, from which the graph is built
// (graph kind "described"). The output is the newest input with the parameters replaced by
// the prediction (each in its own dtype), everything else (optimizer state, step counters,
// buffers) unchanged, written atomically; a GPT-2 lm_head tied to wte gets wte's prediction.
#ifndef NINO_TOOLS_OFFLINE_NOWCAST_H_
#define NINO_TOOLS_OFFLINE_NOWCAST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nowcast_engine.h"

namespace nino::tools {

struct OfflineNowcastOptions {
  std::vector<std::string> states;  // ctx (5) files, oldest first, period/ctx steps apart
  std::string nino_model;           // a name or a file, see common/nino/model_catalog.h
  bool allow_download = false;      // for an official name not cached yet
  std::string out;                  // where the nowcast checkpoint goes (not one of the inputs)
  std::string graph = "auto";       // auto, generic, gpt2, llama; described: model_description
  int64_t num_heads = 0;            // attention models
  int64_t num_kv_heads = 0;         // llama with grouped-query attention (0 = num_heads)
  int k = 0;                        // horizon; 0: from the schedule at `step`
  int64_t step = 0;                 // 1-based training step of the newest state (schedule)
  int64_t period = 1000;
  int64_t max_train_steps = 10000;
  double k_decay = 2.0;
  uint64_t lpe_seed = 0;  // positional-encoding sign seed
  NowcastTuning tuning;   // edge sampling, subgraph mode, bf16 edge state, chunks
  // A model description, JSON (docs/GRAPH_DESCRIPTION.md); non-empty: the graph is built from it
  // (kind "described" implied; `graph` must be "auto" or "described").
  std::string model_description;
};

struct OfflineNowcastResult {
  int k = 0;
  GraphSpec graph;  // as resolved (never kAuto)
  int64_t num_params = 0, num_edges = 0;
  std::vector<std::string> kept;  // entries copied unchanged (buffers), plus a tied lm_head
  double mean_abs_change = 0;
};

// INVALID_ARGUMENT (naming the file and the entry) for inputs that do not describe one model
// the same way, or (naming the description file and the op) for a description that does not fit
// the parameters; NOT_FOUND / DATA_LOSS from the readers; `out` is written only on success.
absl::StatusOr<OfflineNowcastResult> RunOfflineNowcast(const OfflineNowcastOptions& options);

}  // namespace nino::tools

#endif  // NINO_TOOLS_OFFLINE_NOWCAST_H_
