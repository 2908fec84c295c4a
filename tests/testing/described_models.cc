#include "tests/testing/described_models.h"

#include <string>
#include <utility>

namespace nino::testing {

const Layout& LeNet5Layout() {
  static const auto* layout = new Layout{{"conv1.weight", {6, 1, 5, 5}},  {"conv1.bias", {6}},
                                         {"conv2.weight", {16, 6, 5, 5}}, {"conv2.bias", {16}},
                                         {"fc1.weight", {120, 256}},      {"fc1.bias", {120}},
                                         {"fc2.weight", {84, 120}},       {"fc2.bias", {84}},
                                         {"fc3.weight", {10, 84}},        {"fc3.bias", {10}}};
  return *layout;
}

ModelDescription LeNet5Description() {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1, "x");
  x = b.Dense(x, "conv1.weight", "conv1.bias", "conv1");
  x = b.Alias(x, "relu");
  x = b.Alias(x, "max_pool2d");
  x = b.Dense(x, "conv2.weight", "conv2.bias", "conv2");
  x = b.Alias(x, "relu");
  x = b.Alias(x, "max_pool2d");
  x = b.Flatten(x, 16, "flatten");
  x = b.Dense(x, "fc1.weight", "fc1.bias", "fc1");
  x = b.Alias(x, "relu");
  x = b.Dense(x, "fc2.weight", "fc2.bias", "fc2");
  x = b.Alias(x, "relu");
  b.Dense(x, "fc3.weight", "fc3.bias", "fc3");
  return b.description();
}

const Layout& LeNet3x3Layout() {
  static const auto* layout = new Layout{{"conv1.weight", {4, 1, 3, 3}}, {"conv1.bias", {4}},
                                         {"conv2.weight", {8, 4, 3, 3}}, {"conv2.bias", {8}},
                                         {"fc1.weight", {16, 32}},       {"fc1.bias", {16}},
                                         {"fc2.weight", {10, 16}},       {"fc2.bias", {10}}};
  return *layout;
}

ModelDescription LeNet3x3Description() {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1);
  x = b.Dense(x, "conv1.weight", "conv1.bias");
  x = b.Alias(x, "max_pool2d");
  x = b.Dense(x, "conv2.weight", "conv2.bias");
  x = b.Alias(x, "max_pool2d");
  x = b.Flatten(x, 4);
  x = b.Dense(x, "fc1.weight", "fc1.bias");
  x = b.Alias(x, "relu");
  b.Dense(x, "fc2.weight", "fc2.bias");
  return b.description();
}

GraphSpec DescribedGraph(ModelDescription description) {
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kDescribed;
  spec.description = std::make_shared<const ModelDescription>(std::move(description));
  return spec;
}

}  // namespace nino::testing
