// A decoded Python pickle value: the subset that torch.save writes for state dicts and
// simple containers (None, bool, int, float, str, bytes, list, tuple, dict / OrderedDict,
// tensors). Written by hand because LibTorch 1.13's unpickler maps OrderedDict to None
// (see shared/notes/BUILD_OFFLINE.md section 6).
#ifndef NINO_COMMON_IO_PICKLE_VALUE_H_
#define NINO_COMMON_IO_PICKLE_VALUE_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nino::io {

class PickleValue {
 public:
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kList, kTuple, kDict, kTensor };

  PickleValue() = default;  // None
  static PickleValue None() { return PickleValue(); }
  static PickleValue Bool(bool v);
  static PickleValue Int(int64_t v);
  static PickleValue Float(double v);
  static PickleValue String(std::string v);
  static PickleValue Bytes(std::string v);
  static PickleValue List(std::vector<PickleValue> items);
  static PickleValue Tuple(std::vector<PickleValue> items);
  // Insertion-ordered; keys are usually strings or ints. `ordered` records whether the
  // source was a collections.OrderedDict (the writer reproduces it).
  static PickleValue Dict(std::vector<std::pair<PickleValue, PickleValue>> items,
                          bool ordered = false);
  static PickleValue FromTensor(torch::Tensor t);

  Kind kind() const { return kind_; }
  const char* kind_name() const;
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_bytes() const { return kind_ == Kind::kBytes; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_tensor() const { return kind_ == Kind::kTensor; }
  bool is_ordered_dict() const { return kind_ == Kind::kDict && ordered_; }

  // Accessors. Each throws std::logic_error naming the actual kind when called on the
  // wrong kind (callers check the kind first where input is untrusted).
  bool as_bool() const;
  int64_t as_int() const;
  double as_float() const;  // also accepts Int
  const std::string& as_string() const;  // String or Bytes
  const std::vector<PickleValue>& items() const;  // List or Tuple
  std::vector<PickleValue>& mutable_items();
  const std::vector<std::pair<PickleValue, PickleValue>>& dict_items() const;
  std::vector<std::pair<PickleValue, PickleValue>>& mutable_dict_items();
  const torch::Tensor& as_tensor() const;

  // Dict lookup by string key; nullptr when absent or not a dict.
  const PickleValue* Find(const std::string& key) const;

  // Short human-readable rendering for error messages (tensors shown as shape/dtype).
  std::string DebugString(int max_depth = 3) const;

 private:
  Kind kind_ = Kind::kNone;
  bool ordered_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;
  std::shared_ptr<std::vector<PickleValue>> seq_;
  std::shared_ptr<std::vector<std::pair<PickleValue, PickleValue>>> dict_;
  torch::Tensor t_;
};

}  // namespace nino::io

#endif  // NINO_COMMON_IO_PICKLE_VALUE_H_
