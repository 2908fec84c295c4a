// Part of the test library (tests/testing): models whose graphs come from a model description
// (issue 15, docs/GRAPH_DESCRIPTION.md), as layouts plus the descriptions a C++ user writes with
// ModelDescriptionBuilder. Shared by the nowcaster, client and nino_nowcast tests.
#ifndef NINO_TESTS_TESTING_DESCRIBED_MODELS_H_
#define NINO_TESTS_TESTING_DESCRIBED_MODELS_H_

#include <cstdint>
#include <memory>

#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"
#include "tests/testing/test_jobs.h"

namespace nino::testing {

// LeNet-5 on 28x28 images: conv 5x5 1->6, relu, max-pool 2, conv 5x5 6->16, relu, max-pool 2,
// flatten 16 x 4 x 4, fc 256->120, relu, fc 120->84, relu, fc 84->10 (44,426 parameters, 25
// feature slots per edge: a WNN+ checkpoint, not a GNN one).
const Layout& LeNet5Layout();
inline constexpr int64_t kLeNet5Params = 44426;
ModelDescription LeNet5Description();

// The same shape of network with 3x3 kernels, small enough for a GNN checkpoint's 9 slots, on
// 12x12 images: conv 3x3 1->4, max-pool 2, conv 3x3 4->8 (3x3 left), max-pool 2 (ceil: 2x2),
// flatten 8 x 4, fc 32->16, fc 16->10 (1,034 parameters).
const Layout& LeNet3x3Layout();
inline constexpr int64_t kLeNet3x3Params = 1034;
ModelDescription LeNet3x3Description();

// GraphSpec{kDescribed} holding `description`.
GraphSpec DescribedGraph(ModelDescription description);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_DESCRIBED_MODELS_H_
