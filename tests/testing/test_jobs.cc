#include "tests/testing/test_jobs.h"

namespace nino::testing {

const Layout& Fm16Layout() {
  static const auto* layout = new Layout{{"fc.0.weight", {16, 1, 3, 3}},  {"fc.0.bias", {16}},
                                         {"fc.2.weight", {32, 16, 3, 3}}, {"fc.2.bias", {32}},
                                         {"fc.4.weight", {32, 32, 3, 3}}, {"fc.4.bias", {32}},
                                         {"fc.8.weight", {10, 32}},       {"fc.8.bias", {10}}};
  return *layout;
}

v1::RegisterJobRequest RegisterRequest(const std::string& job_id, const Layout& layout,
                                       const std::string& nino_model, int64_t period,
                                       int64_t max_train_steps) {
  v1::RegisterJobRequest r;
  r.set_job_id(job_id);
  for (const auto& [name, shape] : layout) {
    v1::ParamInfo* p = r.add_params();
    p->set_name(name);
    for (int64_t d : shape) p->add_shape(d);
    p->set_dtype(v1::DTYPE_FLOAT32);
  }
  r.mutable_graph()->set_kind("generic");
  r.set_nino_model(nino_model);
  r.set_period(period);
  r.set_ctx(5);
  r.set_max_train_steps(max_train_steps);
  return r;
}

torch::Tensor SmoothStates(int64_t num_params, int seed, int ctx) {
  torch::manual_seed(seed);
  const torch::Tensor start = torch::randn({num_params}) * 0.1;
  const torch::Tensor dir = torch::randn({num_params}) * 0.01;
  std::vector<torch::Tensor> rows;
  for (int i = 0; i < ctx; ++i) rows.push_back(start + dir * i);
  return torch::stack(rows);
}

}  // namespace nino::testing
