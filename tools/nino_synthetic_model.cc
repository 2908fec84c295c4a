// nino_synthetic_model: writes a randomly initialised NiNo checkpoint in the official layout
// (NiNoModel::Synthetic), for tests and demos that must run without the official checkpoints.
// Its predictions are finite and close to the last state, and meaningless otherwise.
//
//   nino_synthetic_model --out synthetic_nino.pt --seed 0          # GNN, layout of nino_no_posw.pt
//   nino_synthetic_model --out synthetic_nino_mlp.pt --wnn         # WNN+, layout of nino_mlp.pt
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/nino/nino_model.h"

ABSL_FLAG(std::string, out, "", "output checkpoint path (written atomically)");
ABSL_FLAG(uint64_t, seed, 0, "random seed of the weights");
ABSL_FLAG(bool, wnn, false, "the WNN+ variant (layout of nino_mlp.pt) instead of the GNN");
ABSL_FLAG(int64_t, hid, 128, "hidden size");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a random NiNo checkpoint in the official layout: nino_synthetic_model --out PATH "
      "[--seed N] [--wnn] [--hid H]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "error: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "error: --out PATH is required\n");
    return 2;
  }
  nino::NiNoConfig config;
  config.gnn = !absl::GetFlag(FLAGS_wnn);
  config.wte_pos_enc = false;  // nino_no_posw.pt's layout (no 50258-row word embedding)
  config.hid = absl::GetFlag(FLAGS_hid);
  auto model = nino::NiNoModel::Synthetic(config, absl::GetFlag(FLAGS_seed));
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
    return 1;
  }
  if (absl::Status s = model->Save(out); !s.ok()) {
    std::fprintf(stderr, "error: writing %s: %s\n", out.c_str(), s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%s, %lld parameters)\n", out.c_str(), config.gnn ? "GNN" : "WNN+",
              static_cast<long long>(model->num_parameters()));
  return 0;
}
