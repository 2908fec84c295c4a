// nino_golden_check --golden DIR --ckpt_dir DIR [--tolerance 1e-5] [--verbose] [--threads N]
//                   [--bf16_matmul]
//
// Runs every golden case (manifest.json) found under DIR through our NiNo, building each graph
// from its manifest alone, and prints one line per case and a closing "N passed, N failed".
// Exit status 0 only if every case passes (and at least one was found).
#include <torch/torch.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/runtime/threads.h"
#include "tools/golden_case.h"

ABSL_FLAG(std::string, golden, "", "folder holding the golden cases (searched recursively)");
ABSL_FLAG(std::string, ckpt_dir, "", "folder holding the NiNo checkpoints named by the manifests");
ABSL_FLAG(double, tolerance, 1e-5, "max |diff| allowed on the predicted parameters");
ABSL_FLAG(bool, verbose, false, "print the comparison of every intermediate for every case");
ABSL_FLAG(int, threads, 0, "intra-op threads (0 = all cores)");
ABSL_FLAG(bool, bf16_matmul, false,
          "run the per-edge products in bfloat16 (measures that option's distance from the "
          "official outputs; pair with a looser --tolerance)");
ABSL_FLAG(std::string, device, "cpu", "cpu, or cuda[:N] (the CUDA/CPU check: same golden bar)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Checks our NiNo against golden outputs of the official code.\n"
      "usage: nino_golden_check --golden DIR --ckpt_dir DIR");
  absl::ParseCommandLine(argc, argv);
  const std::string golden = absl::GetFlag(FLAGS_golden);
  const std::string ckpt_dir = absl::GetFlag(FLAGS_ckpt_dir);
  if (golden.empty() || ckpt_dir.empty()) {
    std::fprintf(stderr, "error: --golden DIR and --ckpt_dir DIR are required\n");
    return 2;
  }
  const int threads = nino::runtime::ThreadsOrAllCores(absl::GetFlag(FLAGS_threads));
  at::set_num_threads(threads);
  const auto manifests = nino::golden::FindManifests(golden);
  if (manifests.empty()) {
    std::fprintf(stderr, "error: no manifest.json found under %s\n", golden.c_str());
    std::printf("0 passed, 0 failed\n");
    return 1;
  }
  const std::string dev = absl::GetFlag(FLAGS_device);
  if (dev != "cpu" && dev.rfind("cuda", 0) != 0) {
    std::fprintf(stderr, "error: --device must be cpu or cuda[:N], got '%s'\n", dev.c_str());
    return 2;
  }
  if (dev != "cpu" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "error: --device %s: no CUDA device visible to this LibTorch\n",
                 dev.c_str());
    return 2;
  }
  nino::golden::ModelCache models(ckpt_dir, torch::Device(dev));
  nino::ForwardOptions forward;
  if (absl::GetFlag(FLAGS_bf16_matmul)) forward.matmul_dtype = torch::kBFloat16;
  int passed = 0, failed = 0;
  for (const auto& mpath : manifests) {
    auto r = nino::golden::RunCase(golden, mpath, &models, absl::GetFlag(FLAGS_tolerance), forward);
    std::printf("%-4s %s: %s\n", r.passed ? "ok" : "FAIL", r.name.c_str(), r.summary.c_str());
    if (!r.passed || absl::GetFlag(FLAGS_verbose)) {
      for (const auto& d : r.details) std::printf("       %s\n", d.c_str());
    }
    (r.passed ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
