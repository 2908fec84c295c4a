// GPT-2 parameters by name, for the GPT-2 graph (DescribeGpt2, and the hand-written reference
// builder its tests compare against).
//
// Contract: built over a model's ParamSpec list (which must outlive it). Get(name, shape) returns
// the parameter and marks it used, or INVALID_ARGUMENT "GPT-2 graph: missing parameter '<name>'"
// / "... has shape (..), expected (..)". Has / Raw look a name up without checking or marking it.
// CheckAllUsed() is INVALID_ARGUMENT naming the first parameter (by name) no Get marked, as "not
// part of the GPT-2 layout". The messages are part of the tests' contract: both builders must
// refuse a layout with the same words.
#ifndef NINO_COMMON_NINO_GPT2_PARAMS_H_
#define NINO_COMMON_NINO_GPT2_PARAMS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino {

class Gpt2Params {
 public:
  explicit Gpt2Params(const std::vector<ParamSpec>& params);

  absl::StatusOr<const ParamSpec*> Get(const std::string& name, const std::vector<int64_t>& shape);
  bool Has(const std::string& name) const { return by_name_.count(name) > 0; }
  const ParamSpec* Raw(const std::string& name) const;
  absl::Status CheckAllUsed() const;

 private:
  std::map<std::string, const ParamSpec*> by_name_;
  std::set<std::string> used_;
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_GPT2_PARAMS_H_
