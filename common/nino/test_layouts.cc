#include "common/nino/test_layouts.h"

namespace nino::testing {

Shapes Fm16Layout() {
  return {{"fc.0.weight", {16, 1, 3, 3}},  {"fc.0.bias", {16}},
          {"fc.2.weight", {32, 16, 3, 3}}, {"fc.2.bias", {32}},
          {"fc.4.weight", {32, 32, 3, 3}}, {"fc.4.bias", {32}},
          {"fc.8.weight", {10, 32}},       {"fc.8.bias", {10}}};
}

Shapes Gpt2Layout(int L, int64_t d, int64_t V, int64_t Ppos, int64_t Fb, bool lnf) {
  Shapes s;
  if (V) s.push_back({"transformer.wte.weight", {V, d}});
  if (Ppos) s.push_back({"transformer.wpe.weight", {Ppos, d}});
  for (int b = 0; b < L; ++b) {
    const std::string h = "transformer.h." + std::to_string(b) + ".";
    s.push_back({h + "ln_1.weight", {d}});
    s.push_back({h + "ln_1.bias", {d}});
    s.push_back({h + "attn.c_attn.weight", {d, 3 * d}});
    s.push_back({h + "attn.c_attn.bias", {3 * d}});
    s.push_back({h + "attn.c_proj.weight", {d, d}});
    s.push_back({h + "attn.c_proj.bias", {d}});
    s.push_back({h + "ln_2.weight", {d}});
    s.push_back({h + "ln_2.bias", {d}});
    s.push_back({h + "mlp.c_fc.weight", {d, Fb}});
    s.push_back({h + "mlp.c_fc.bias", {Fb}});
    s.push_back({h + "mlp.c_proj.weight", {Fb, d}});
    s.push_back({h + "mlp.c_proj.bias", {d}});
  }
  if (lnf) {
    s.push_back({"transformer.ln_f.weight", {d}});
    s.push_back({"transformer.ln_f.bias", {d}});
  }
  return s;
}

}  // namespace nino::testing
