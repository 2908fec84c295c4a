// Command-line flags of NowcastTuning, shared by nino_train, nino_nowcast and nino_bench:
//   --edge_sample_ratio=R  --subgraph  --bf16_edge_state  --bf16_matmul  --chunk_mb=M
#ifndef NINO_COMMON_NINO_TUNING_FLAGS_H_
#define NINO_COMMON_NINO_TUNING_FLAGS_H_

#include <cstdint>

#include "common/nino/nowcast_engine.h"

namespace nino {

// The flags' values (after absl::ParseCommandLine); `seed` seeds the edge samples.
NowcastTuning TuningFromFlags(uint64_t seed);

}  // namespace nino

#endif  // NINO_COMMON_NINO_TUNING_FLAGS_H_
