// Parameter layouts (names and shapes in named_parameters() order) that several tests build
// graphs for: the official FM-16 CNN and GPT-2-style transformers of any size. Test-only.
#ifndef NINO_COMMON_NINO_TEST_LAYOUTS_H_
#define NINO_COMMON_NINO_TEST_LAYOUTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nino::testing {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// The official FM-16 CNN (fc.0/2/4 3x3 convolutions 1-16-32-32, fc.8 linear 32-10).
Shapes Fm16Layout();

// GPT-2 with L blocks of width d, MLP width Fb, a V-row token embedding (none if 0), a Ppos-row
// position embedding (none if 0) and ln_f when `lnf` (HF GPT-2 names; Conv1D [in, out] weights).
Shapes Gpt2Layout(int L, int64_t d, int64_t V, int64_t Ppos, int64_t Fb, bool lnf = true);

}  // namespace nino::testing

#endif  // NINO_COMMON_NINO_TEST_LAYOUTS_H_
