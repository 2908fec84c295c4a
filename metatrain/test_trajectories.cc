#include "metatrain/test_trajectories.h"

#include <cmath>

#include "common/nino/neural_graph.h"
#include "trainer/trajectory.h"

namespace nino::metatrain::testing {

torch::Tensor TrajectoryRow(uint64_t seed, int64_t row, int64_t num_params) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor offset = at::normal(0.0, 0.5, {num_params}, gen, opts);
  const torch::Tensor slope = at::normal(0.0, 0.05, {num_params}, gen, opts);
  at::Generator noise = at::detail::createCPUGenerator(seed * 100003 + row);
  return offset + slope * std::sqrt(static_cast<double>(row)) +
         at::normal(0.0, 0.001, {num_params}, noise, opts);
}

namespace {

// The flat parameter count of a named layout (the trainer's parameter table).
int64_t NumParams(const std::vector<std::pair<std::string, std::vector<int64_t>>>& named) {
  auto table = MakeParamTable(named);
  TORCH_CHECK(table.ok(), table.status().ToString());
  return TotalParams(*table);
}

// A vision-style dataset (every 4 steps) of the layout `params`; returns P.
int64_t WriteVisionTestTrajectory(
    const std::string& dir, const std::string& task, uint64_t seed, int64_t rows,
    std::vector<std::pair<std::string, std::vector<int64_t>>> params) {
  trainer::TrajectoryInfo info;
  info.task = task;
  info.seed = seed;
  info.lr = 1e-3;
  info.optimizer = "adam";
  info.max_steps = rows * 4;
  info.every = 4;
  const int64_t P = NumParams(params);
  info.params = std::move(params);
  auto writer = trainer::TrajectoryWriter::Open(dir, info, -1);
  TORCH_CHECK(writer.ok(), writer.status().ToString());
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK((*writer)->Append(r * 4, TrajectoryRow(seed, r, P)).ok());
  }
  TORCH_CHECK((*writer)->Finish({{"final_acc", 0}}).ok());
  return P;
}

}  // namespace

int64_t WriteTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows) {
  return WriteVisionTestTrajectory(
      dir, "mlp-test", seed, rows,
      {{"fc.0.weight", {5, 6}}, {"fc.0.bias", {5}}, {"fc.2.weight", {4, 5}}, {"fc.2.bias", {4}}});
}

int64_t WriteConvTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows, int64_t k) {
  return WriteVisionTestTrajectory(dir, "cnn-test", seed, rows,
                                   {{"fc.0.weight", {3, 1, k, k}},
                                    {"fc.0.bias", {3}},
                                    {"fc.2.weight", {4, 3, k, k}},
                                    {"fc.2.bias", {4}},
                                    {"fc.6.weight", {2, 4}},
                                    {"fc.6.bias", {2}}});
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Gpt2NamedShapes(const Gpt2TestShape& s) {
  const int64_t d = s.dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> named = {
      {"transformer.wte.weight", {s.vocab, d}}, {"transformer.wpe.weight", {s.positions, d}}};
  for (int64_t b = 0; b < s.layers; ++b) {
    const std::string h = "transformer.h." + std::to_string(b) + ".";
    named.push_back({h + "ln_1.weight", {d}});
    named.push_back({h + "ln_1.bias", {d}});
    named.push_back({h + "attn.c_attn.weight", {d, 3 * d}});
    named.push_back({h + "attn.c_attn.bias", {3 * d}});
    named.push_back({h + "attn.c_proj.weight", {d, d}});
    named.push_back({h + "attn.c_proj.bias", {d}});
    named.push_back({h + "ln_2.weight", {d}});
    named.push_back({h + "ln_2.bias", {d}});
    named.push_back({h + "mlp.c_fc.weight", {d, 4 * d}});
    named.push_back({h + "mlp.c_fc.bias", {4 * d}});
    named.push_back({h + "mlp.c_proj.weight", {4 * d, d}});
    named.push_back({h + "mlp.c_proj.bias", {d}});
  }
  named.push_back({"transformer.ln_f.weight", {d}});
  named.push_back({"transformer.ln_f.bias", {d}});
  return named;
}

int64_t WriteGpt2TestTrajectory(const std::string& dir, uint64_t seed, int64_t rows,
                                const Gpt2TestShape& shape, const RowFunction& values) {
  GraphSpec graph;
  graph.kind = GraphSpec::Kind::kAuto;  // as the trainer's LM task
  graph.num_heads = shape.heads;
  return WriteLmTestTrajectory(dir, seed, rows, Gpt2NamedShapes(shape), graph, values);
}

int64_t WriteLmTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows,
                              std::vector<std::pair<std::string, std::vector<int64_t>>> named,
                              const GraphSpec& graph, const RowFunction& values) {
  trainer::TrajectoryInfo info;
  info.task = "lm-test";
  info.seed = seed;
  info.lr = 1e-3;
  info.optimizer = "adamw";
  info.max_steps = (rows - 1) * 200;
  info.every = 200;
  info.params = std::move(named);
  info.graph = graph;
  const int64_t P = NumParams(info.params);
  auto writer = trainer::TrajectoryWriter::Open(dir, info, -1);
  TORCH_CHECK(writer.ok(), writer.status().ToString());
  for (int64_t r = 0; r < rows; ++r) {
    const torch::Tensor row = values ? values(r, P) : TrajectoryRow(seed, r, P);
    TORCH_CHECK((*writer)->Append(r * 200, row).ok());
  }
  TORCH_CHECK((*writer)->Finish({{"final_ppl", 0}}).ok());
  return P;
}

}  // namespace nino::metatrain::testing
