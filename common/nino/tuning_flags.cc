#include "common/nino/tuning_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(double, edge_sample_ratio, 0.0,
          "NiNo steps: 0 = message passing over all edges (exact); 0 < r < 1 = each layer over a "
          "random fraction r of the edges (less time and memory, NINO_SPEC.md 2.5)");
ABSL_FLAG(bool, subgraph, false,
          "NiNo steps: one graph per transformer block (GPT-2; NINO_SPEC.md 5.4)");
ABSL_FLAG(bool, bf16_edge_state, false,
          "NiNo steps: keep the per-edge state in bfloat16 (half its memory, computed in float32)");
ABSL_FLAG(bool, bf16_matmul, false,
          "NiNo steps: run the per-edge hid x hid matrix products in bfloat16 (faster where the "
          "CPU has AVX512-BF16 or AMX; approximate: the default float32 step is exact)");
ABSL_FLAG(int64_t, chunk_mb, 0,
          "NiNo steps: MiB of per-edge temporaries, which sets the chunk size (0 = default)");

namespace nino {

NowcastTuning TuningFromFlags(uint64_t seed) {
  NowcastTuning t;
  t.edge_sample_ratio = absl::GetFlag(FLAGS_edge_sample_ratio);
  t.edge_sample_seed = seed;
  t.subgraph = absl::GetFlag(FLAGS_subgraph);
  t.bf16_edge_state = absl::GetFlag(FLAGS_bf16_edge_state);
  t.bf16_matmul = absl::GetFlag(FLAGS_bf16_matmul);
  t.chunk_bytes = absl::GetFlag(FLAGS_chunk_mb) * (int64_t{1} << 20);
  return t;
}

}  // namespace nino
