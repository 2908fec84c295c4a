#include "common/io/pickle_value.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace nino::io {
namespace {

[[noreturn]] void WrongKind(const char* wanted, const PickleValue& v) {
  throw std::logic_error(std::string("PickleValue: expected ") + wanted + ", got " + v.kind_name());
}

std::string QuoteString(const std::string& s, size_t max_len = 64) {
  std::string out = "'";
  size_t n = 0;
  for (unsigned char c : s) {
    if (n++ >= max_len) {
      out += "...";
      break;
    }
    if (c == '\'' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);  // UTF-8 bytes are passed through
    }
  }
  out += "'";
  return out;
}

}  // namespace

PickleValue PickleValue::Bool(bool v) {
  PickleValue p;
  p.kind_ = Kind::kBool;
  p.b_ = v;
  return p;
}

PickleValue PickleValue::Int(int64_t v) {
  PickleValue p;
  p.kind_ = Kind::kInt;
  p.i_ = v;
  return p;
}

PickleValue PickleValue::Float(double v) {
  PickleValue p;
  p.kind_ = Kind::kFloat;
  p.f_ = v;
  return p;
}

PickleValue PickleValue::String(std::string v) {
  PickleValue p;
  p.kind_ = Kind::kString;
  p.s_ = std::move(v);
  return p;
}

PickleValue PickleValue::Bytes(std::string v) {
  PickleValue p;
  p.kind_ = Kind::kBytes;
  p.s_ = std::move(v);
  return p;
}

PickleValue PickleValue::List(std::vector<PickleValue> items) {
  PickleValue p;
  p.kind_ = Kind::kList;
  p.seq_ = std::make_shared<std::vector<PickleValue>>(std::move(items));
  return p;
}

PickleValue PickleValue::Tuple(std::vector<PickleValue> items) {
  PickleValue p;
  p.kind_ = Kind::kTuple;
  p.seq_ = std::make_shared<std::vector<PickleValue>>(std::move(items));
  return p;
}

PickleValue PickleValue::Dict(std::vector<std::pair<PickleValue, PickleValue>> items,
                              bool ordered) {
  PickleValue p;
  p.kind_ = Kind::kDict;
  p.ordered_ = ordered;
  p.dict_ = std::make_shared<std::vector<std::pair<PickleValue, PickleValue>>>(std::move(items));
  return p;
}

PickleValue PickleValue::FromTensor(torch::Tensor t) {
  PickleValue p;
  p.kind_ = Kind::kTensor;
  p.t_ = std::move(t);
  return p;
}

const char* PickleValue::kind_name() const {
  switch (kind_) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return ordered_ ? "OrderedDict" : "dict";
    case Kind::kTensor:
      return "Tensor";
  }
  return "?";
}

bool PickleValue::as_bool() const {
  if (kind_ != Kind::kBool) WrongKind("bool", *this);
  return b_;
}

int64_t PickleValue::as_int() const {
  if (kind_ != Kind::kInt) WrongKind("int", *this);
  return i_;
}

double PickleValue::as_float() const {
  if (kind_ == Kind::kFloat) return f_;
  if (kind_ == Kind::kInt) return static_cast<double>(i_);
  WrongKind("float or int", *this);
}

const std::string& PickleValue::as_string() const {
  if (kind_ != Kind::kString && kind_ != Kind::kBytes) WrongKind("str or bytes", *this);
  return s_;
}

const std::vector<PickleValue>& PickleValue::items() const {
  if (kind_ != Kind::kList && kind_ != Kind::kTuple) WrongKind("list or tuple", *this);
  return *seq_;
}

std::vector<PickleValue>& PickleValue::mutable_items() {
  if (kind_ != Kind::kList && kind_ != Kind::kTuple) WrongKind("list or tuple", *this);
  return *seq_;
}

const std::vector<std::pair<PickleValue, PickleValue>>& PickleValue::dict_items() const {
  if (kind_ != Kind::kDict) WrongKind("dict", *this);
  return *dict_;
}

std::vector<std::pair<PickleValue, PickleValue>>& PickleValue::mutable_dict_items() {
  if (kind_ != Kind::kDict) WrongKind("dict", *this);
  return *dict_;
}

const torch::Tensor& PickleValue::as_tensor() const {
  if (kind_ != Kind::kTensor) WrongKind("Tensor", *this);
  return t_;
}

const PickleValue* PickleValue::Find(const std::string& key) const {
  if (kind_ != Kind::kDict || !dict_) return nullptr;
  for (const auto& kv : *dict_) {
    if (kv.first.kind_ == Kind::kString && kv.first.s_ == key) return &kv.second;
  }
  return nullptr;
}

std::string PickleValue::DebugString(int max_depth) const {
  constexpr size_t kMaxItems = 8;
  std::ostringstream os;
  switch (kind_) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return b_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat: {
      if (std::isnan(f_)) return "nan";
      if (std::isinf(f_)) return f_ > 0 ? "inf" : "-inf";
      // Shortest round-tripping form, like Python's repr.
      char buf[40];
      for (int precision = 15; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof(buf), "%.*g", precision, f_);
        if (std::strtod(buf, nullptr) == f_) break;
      }
      std::string s = buf;
      if (s.find_first_of(".e") == std::string::npos) s += ".0";
      return s;
    }
    case Kind::kString:
      return QuoteString(s_);
    case Kind::kBytes:
      return "b" + QuoteString(s_);
    case Kind::kTensor: {
      if (!t_.defined()) return "Tensor(undefined)";
      os << "Tensor(" << c10::toString(t_.scalar_type()) << ", [";
      for (int64_t d = 0; d < t_.dim(); ++d) os << (d ? ", " : "") << t_.size(d);
      os << "])";
      return os.str();
    }
    case Kind::kList:
    case Kind::kTuple: {
      const char* open = kind_ == Kind::kList ? "[" : "(";
      const char* close = kind_ == Kind::kList ? "]" : ")";
      if (max_depth <= 0) return std::string(open) + "..." + close;
      os << open;
      for (size_t i = 0; i < seq_->size(); ++i) {
        if (i) os << ", ";
        if (i >= kMaxItems) {
          os << "... (" << seq_->size() << " items)";
          break;
        }
        os << (*seq_)[i].DebugString(max_depth - 1);
      }
      if (kind_ == Kind::kTuple && seq_->size() == 1) os << ",";
      os << close;
      return os.str();
    }
    case Kind::kDict: {
      const char* prefix = ordered_ ? "OrderedDict{" : "{";
      if (max_depth <= 0) return std::string(prefix) + "...}";
      os << prefix;
      for (size_t i = 0; i < dict_->size(); ++i) {
        if (i) os << ", ";
        if (i >= kMaxItems) {
          os << "... (" << dict_->size() << " items)";
          break;
        }
        os << (*dict_)[i].first.DebugString(max_depth - 1) << ": "
           << (*dict_)[i].second.DebugString(max_depth - 1);
      }
      os << "}";
      return os.str();
    }
  }
  return "?";
}

}  // namespace nino::io
