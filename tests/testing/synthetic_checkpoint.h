// Small synthetic NiNo checkpoints for tests, so that no service or client test needs ../shared.
// The weights are random (NiNoModel::Synthetic, fixed by the seed): predictions are finite and
// close to the last state, and meaningless otherwise, so a test compares the service with an
// in-process engine on the same file, never with the official numbers.
#ifndef NINO_TESTS_TESTING_SYNTHETIC_CHECKPOINT_H_
#define NINO_TESTS_TESTING_SYNTHETIC_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/nino/nino_model.h"

namespace nino::testing {

enum class SyntheticNiNo {
  kGnn,  // the layout of the official nino_no_posw.pt (GNN, 8-dim positional encoding)
  kWnn,  // the layout of the official nino_mlp.pt (WNN+: no message passing; fast, small)
};

// The NiNoConfig of `kind` at hidden size `hid` (128: the official size).
NiNoConfig SyntheticConfig(SyntheticNiNo kind, int64_t hid = 128);

// Writes a checkpoint of `kind` to `path` (atomically; loadable by NiNoModel::Load and by the
// nowcaster's --nino_model=name=path); returns `path`.
absl::StatusOr<std::string> WriteSyntheticCheckpoint(const std::string& path, SyntheticNiNo kind,
                                                     uint64_t seed = 0, int64_t hid = 128);

// The same file, written once per process and kind into ::testing::TempDir() and reused by
// every caller; fails the current test (and returns "") if it cannot be written.
std::string SharedSyntheticCheckpoint(SyntheticNiNo kind);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_SYNTHETIC_CHECKPOINT_H_
