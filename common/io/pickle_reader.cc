#include "common/io/pickle_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"

namespace nino::io {
namespace {

// Opcodes (Python's Lib/pickle.py).
enum : uint8_t {
  MARK = '(',
  STOP = '.',
  POP = '0',
  POP_MARK = '1',
  DUP = '2',
  FLOAT = 'F',
  INT = 'I',
  BININT = 'J',
  BININT1 = 'K',
  LONG = 'L',
  BININT2 = 'M',
  NONE = 'N',
  PERSID = 'P',
  BINPERSID = 'Q',
  REDUCE = 'R',
  STRING = 'S',
  BINSTRING = 'T',
  SHORT_BINSTRING = 'U',
  UNICODE = 'V',
  BINUNICODE = 'X',
  APPEND = 'a',
  BUILD = 'b',
  GLOBAL = 'c',
  DICT = 'd',
  EMPTY_DICT = '}',
  APPENDS = 'e',
  GET = 'g',
  BINGET = 'h',
  INST = 'i',
  LONG_BINGET = 'j',
  LIST = 'l',
  EMPTY_LIST = ']',
  OBJ = 'o',
  PUT = 'p',
  BINPUT = 'q',
  LONG_BINPUT = 'r',
  SETITEM = 's',
  TUPLE = 't',
  EMPTY_TUPLE = ')',
  SETITEMS = 'u',
  BINFLOAT = 'G',
  PROTO = 0x80,
  NEWOBJ = 0x81,
  EXT1 = 0x82,
  EXT2 = 0x83,
  EXT4 = 0x84,
  TUPLE1 = 0x85,
  TUPLE2 = 0x86,
  TUPLE3 = 0x87,
  NEWTRUE = 0x88,
  NEWFALSE = 0x89,
  LONG1 = 0x8a,
  LONG4 = 0x8b,
  BINBYTES = 'B',
  SHORT_BINBYTES = 'C',
  SHORT_BINUNICODE = 0x8c,
  BINUNICODE8 = 0x8d,
  BINBYTES8 = 0x8e,
  EMPTY_SET = 0x8f,
  ADDITEMS = 0x90,
  FROZENSET = 0x91,
  NEWOBJ_EX = 0x92,
  STACK_GLOBAL = 0x93,
  MEMOIZE = 0x94,
  FRAME = 0x95,
  BYTEARRAY8 = 0x96,
  NEXT_BUFFER = 0x97,
  READONLY_BUFFER = 0x98,
};

const char* OpName(uint8_t op) {
  switch (op) {
    case MARK:
      return "MARK";
    case STOP:
      return "STOP";
    case POP:
      return "POP";
    case POP_MARK:
      return "POP_MARK";
    case DUP:
      return "DUP";
    case FLOAT:
      return "FLOAT";
    case INT:
      return "INT";
    case BININT:
      return "BININT";
    case BININT1:
      return "BININT1";
    case LONG:
      return "LONG";
    case BININT2:
      return "BININT2";
    case NONE:
      return "NONE";
    case PERSID:
      return "PERSID";
    case BINPERSID:
      return "BINPERSID";
    case REDUCE:
      return "REDUCE";
    case STRING:
      return "STRING";
    case BINSTRING:
      return "BINSTRING";
    case SHORT_BINSTRING:
      return "SHORT_BINSTRING";
    case UNICODE:
      return "UNICODE";
    case BINUNICODE:
      return "BINUNICODE";
    case APPEND:
      return "APPEND";
    case BUILD:
      return "BUILD";
    case GLOBAL:
      return "GLOBAL";
    case DICT:
      return "DICT";
    case EMPTY_DICT:
      return "EMPTY_DICT";
    case APPENDS:
      return "APPENDS";
    case GET:
      return "GET";
    case BINGET:
      return "BINGET";
    case INST:
      return "INST";
    case LONG_BINGET:
      return "LONG_BINGET";
    case LIST:
      return "LIST";
    case EMPTY_LIST:
      return "EMPTY_LIST";
    case OBJ:
      return "OBJ";
    case PUT:
      return "PUT";
    case BINPUT:
      return "BINPUT";
    case LONG_BINPUT:
      return "LONG_BINPUT";
    case SETITEM:
      return "SETITEM";
    case TUPLE:
      return "TUPLE";
    case EMPTY_TUPLE:
      return "EMPTY_TUPLE";
    case SETITEMS:
      return "SETITEMS";
    case BINFLOAT:
      return "BINFLOAT";
    case PROTO:
      return "PROTO";
    case NEWOBJ:
      return "NEWOBJ";
    case EXT1:
      return "EXT1";
    case EXT2:
      return "EXT2";
    case EXT4:
      return "EXT4";
    case TUPLE1:
      return "TUPLE1";
    case TUPLE2:
      return "TUPLE2";
    case TUPLE3:
      return "TUPLE3";
    case NEWTRUE:
      return "NEWTRUE";
    case NEWFALSE:
      return "NEWFALSE";
    case LONG1:
      return "LONG1";
    case LONG4:
      return "LONG4";
    case BINBYTES:
      return "BINBYTES";
    case SHORT_BINBYTES:
      return "SHORT_BINBYTES";
    case SHORT_BINUNICODE:
      return "SHORT_BINUNICODE";
    case BINUNICODE8:
      return "BINUNICODE8";
    case BINBYTES8:
      return "BINBYTES8";
    case EMPTY_SET:
      return "EMPTY_SET";
    case ADDITEMS:
      return "ADDITEMS";
    case FROZENSET:
      return "FROZENSET";
    case NEWOBJ_EX:
      return "NEWOBJ_EX";
    case STACK_GLOBAL:
      return "STACK_GLOBAL";
    case MEMOIZE:
      return "MEMOIZE";
    case FRAME:
      return "FRAME";
    case BYTEARRAY8:
      return "BYTEARRAY8";
    case NEXT_BUFFER:
      return "NEXT_BUFFER";
    case READONLY_BUFFER:
      return "READONLY_BUFFER";
  }
  return nullptr;
}

// Printable, length-limited rendering of untrusted text for error messages.
std::string Printable(std::string_view s, size_t max_len = 80) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i >= max_len) {
      out += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  return out;
}

enum class GlobalId {
  kOrderedDict,
  kRebuildTensorV2,
  kRebuildParameter,
  kStorageType,
  kTorchSize,
  kCodecsEncode,
  kBytes,
};

struct StorageName {
  const char* name;
  torch::ScalarType dtype;
};

constexpr StorageName kStorageNames[] = {
    {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64},
    {"HalfStorage", torch::kFloat16},  {"BFloat16Storage", torch::kBFloat16},
    {"LongStorage", torch::kInt64},    {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},   {"CharStorage", torch::kInt8},
    {"ByteStorage", torch::kUInt8},    {"BoolStorage", torch::kBool},
};

// An unpickler stack / memo entry: a value, a resolved global, or a tuple that holds a
// global (only valid as a persistent id, e.g. ('storage', torch.FloatStorage, '0', 'cpu', n)).
struct Item {
  enum class Tag { kValue, kGlobal, kRawTuple };
  Tag tag = Tag::kValue;
  PickleValue value;
  GlobalId global = GlobalId::kOrderedDict;
  torch::ScalarType storage_dtype = torch::kFloat32;
  std::string global_name;
  std::shared_ptr<std::vector<Item>> raw;  // kRawTuple; never holds another kRawTuple

  static Item Value(PickleValue v) {
    Item it;
    it.value = std::move(v);
    return it;
  }
};

const void* ContainerId(const PickleValue& v) {
  switch (v.kind()) {
    case PickleValue::Kind::kList:
    case PickleValue::Kind::kTuple:
      return &v.items();
    case PickleValue::Kind::kDict:
      return &v.dict_items();
    default:
      return nullptr;
  }
}

size_t ChildCount(const PickleValue& v) {
  switch (v.kind()) {
    case PickleValue::Kind::kList:
    case PickleValue::Kind::kTuple:
      return v.items().size();
    case PickleValue::Kind::kDict:
      return 2 * v.dict_items().size();
    default:
      return 0;
  }
}

PickleValue* Child(PickleValue& v, size_t i) {
  if (v.kind() == PickleValue::Kind::kDict) {
    auto& kv = v.mutable_dict_items()[i / 2];
    return i % 2 == 0 ? &kv.first : &kv.second;
  }
  return &v.mutable_items()[i];
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const StorageLoader& loader, const PickleReaderOptions& opt)
      : data_(data), loader_(loader), opt_(opt) {}

  ~Unpickler() { Teardown(nullptr); }

  absl::StatusOr<PickleValue> Run() {
    absl::Status st = Loop();
    if (!st.ok()) {
      Teardown(nullptr);
      return st;
    }
    // STOP: the result is the top of the stack (anything below is ignored, as in Python).
    absl::StatusOr<Item> popped = Pop();
    if (!popped.ok()) {
      Teardown(nullptr);
      return popped.status();
    }
    Item top = std::move(popped).value();
    if (top.tag != Item::Tag::kValue) {
      Teardown(nullptr);
      return InvalidArg(absl::StrCat("the pickled object is ", Describe(top), ", not a value"));
    }
    PickleValue result = std::move(top.value);
    std::unordered_set<const void*> keep;
    st = Finalize(&result, &keep);
    if (!st.ok()) {
      stack_.push_back(Item::Value(std::move(result)));  // torn down with everything else
      Teardown(nullptr);
      return st;
    }
    Teardown(&keep);
    return result;
  }

 private:
  // ---- errors -----------------------------------------------------------------------------
  std::string Where() const {
    const char* name = op_ < 256 ? OpName(static_cast<uint8_t>(op_)) : nullptr;
    if (name == nullptr) return absl::StrFormat(" (at byte offset %d)", op_pos_);
    return absl::StrFormat(" (opcode %s at byte offset %d)", name, op_pos_);
  }
  absl::Status DataLoss(const std::string& msg) const {
    return absl::DataLossError(absl::StrCat("corrupt pickle: ", msg, Where()));
  }
  absl::Status InvalidArg(const std::string& msg) const {
    return absl::InvalidArgumentError(absl::StrCat("unsupported pickle content: ", msg, Where()));
  }
  absl::Status Truncated(size_t need) const {
    return absl::DataLossError(absl::StrFormat(
        "truncated pickle: %s at byte offset %d needs %d more bytes at offset %d but the pickle "
        "has %d bytes",
        op_ < 256 && OpName(static_cast<uint8_t>(op_)) ? OpName(static_cast<uint8_t>(op_))
                                                       : "opcode",
        op_pos_, need, pos_, data_.size()));
  }

  static std::string Describe(const Item& it) {
    switch (it.tag) {
      case Item::Tag::kValue:
        return std::string("a ") + it.value.kind_name();
      case Item::Tag::kGlobal:
        return "the global " + it.global_name;
      case Item::Tag::kRawTuple:
        return "a tuple holding a global";
    }
    return "?";
  }

  // ---- raw reads ----------------------------------------------------------------------------
  absl::Status Need(uint64_t n) const {
    if (n > data_.size() - pos_) return Truncated(n);
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status ReadLE(T* out) {
    NINO_RETURN_IF_ERROR(Need(sizeof(T)));
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      v |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += sizeof(T);
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }
  absl::Status ReadBytes(uint64_t n, std::string_view* out) {
    NINO_RETURN_IF_ERROR(Need(n));
    *out = data_.substr(pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  // A '\n'-terminated line (GLOBAL, PUT, GET), at most max_len bytes.
  absl::Status ReadLine(std::string_view* out, size_t max_len = 1024) {
    size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) {
      return absl::DataLossError(absl::StrFormat(
          "truncated pickle: %s at byte offset %d: missing end of line before the end of data",
          OpName(static_cast<uint8_t>(op_)), op_pos_));
    }
    if (end - pos_ > max_len) return DataLoss("line argument too long");
    *out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return absl::OkStatus();
  }
  absl::Status ReadDecimalLine(uint64_t* out) {
    std::string_view line;
    NINO_RETURN_IF_ERROR(ReadLine(&line, 20));
    if (line.empty()) return DataLoss("empty memo index");
    uint64_t v = 0;
    for (char c : line) {
      if (c < '0' || c > '9') return DataLoss("memo index is not a decimal number");
      v = v * 10 + static_cast<uint64_t>(c - '0');
      if (v > (uint64_t{1} << 40)) return DataLoss("memo index out of range");
    }
    *out = v;
    return absl::OkStatus();
  }

  // ---- stack --------------------------------------------------------------------------------
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }

  absl::Status Push(Item it) {
    if (stack_.size() >= opt_.max_stack_size) {
      return InvalidArg(absl::StrFormat("unpickler stack exceeds %d items", opt_.max_stack_size));
    }
    stack_.push_back(std::move(it));
    return absl::OkStatus();
  }
  absl::Status PushValue(PickleValue v) { return Push(Item::Value(std::move(v))); }

  absl::StatusOr<Item> Pop() {
    if (stack_.size() <= Floor()) return DataLoss("stack underflow");
    Item it = std::move(stack_.back());
    stack_.pop_back();
    return it;
  }
  absl::StatusOr<Item*> Top() {
    if (stack_.size() <= Floor()) return DataLoss("stack underflow");
    return &stack_.back();
  }
  absl::StatusOr<std::vector<Item>> PopMark() {
    if (marks_.empty()) return DataLoss("no MARK on the stack");
    size_t floor = marks_.back();
    marks_.pop_back();
    std::vector<Item> items;
    items.reserve(stack_.size() - floor);
    for (size_t i = floor; i < stack_.size(); ++i) items.push_back(std::move(stack_[i]));
    stack_.resize(floor);
    return items;
  }

  absl::StatusOr<PickleValue> AsValue(Item it, const char* context) const {
    if (it.tag != Item::Tag::kValue) {
      return InvalidArg(absl::StrCat(Describe(it), " cannot be used as a value (", context, ")"));
    }
    return std::move(it.value);
  }

  absl::StatusOr<Item> MakeTuple(std::vector<Item> items) const {
    bool all_values = true;
    for (const Item& it : items) {
      if (it.tag == Item::Tag::kRawTuple) {
        return InvalidArg("a tuple holding a global may only be used as a persistent id");
      }
      if (it.tag != Item::Tag::kValue) all_values = false;
    }
    if (all_values) {
      std::vector<PickleValue> vals;
      vals.reserve(items.size());
      for (Item& it : items) vals.push_back(std::move(it.value));
      return Item::Value(PickleValue::Tuple(std::move(vals)));
    }
    Item raw;
    raw.tag = Item::Tag::kRawTuple;
    raw.raw = std::make_shared<std::vector<Item>>(std::move(items));
    return raw;
  }

  // ---- dicts and lists ----------------------------------------------------------------------
  // Hash of a hashable scalar key for duplicate detection ("" for keys we do not dedupe).
  static std::string KeyHash(const PickleValue& k) {
    switch (k.kind()) {
      case PickleValue::Kind::kString:
        return "s" + k.as_string();
      case PickleValue::Kind::kBytes:
        return "b" + k.as_string();
      case PickleValue::Kind::kInt:
        return "i" + std::to_string(k.as_int());
      case PickleValue::Kind::kBool:
        return k.as_bool() ? "i1" : "i0";
      case PickleValue::Kind::kNone:
        return "n";
      default:
        return "";
    }
  }

  // Python dict semantics for hashable scalar keys: a repeated key replaces the value in
  // place. The index holds a reference to its dict so the address cannot be reused.
  absl::Status SetItem(PickleValue& dict, PickleValue key, PickleValue value) {
    if (!dict.is_dict()) return DataLoss(absl::StrCat("SETITEM(S) target is a ", dict.kind_name()));
    if (key.is_list() || key.is_dict()) {
      return InvalidArg(absl::StrCat("unhashable dict key of type ", key.kind_name()));
    }
    auto& items = dict.mutable_dict_items();
    std::string h = KeyHash(key);
    if (!h.empty()) {
      auto found = dict_index_.find(&items);
      if (found == dict_index_.end()) {
        DictIndex fresh;
        fresh.keepalive = dict;
        for (size_t i = 0; i < items.size(); ++i) {
          std::string hk = KeyHash(items[i].first);
          if (!hk.empty()) fresh.index[hk] = i;
        }
        found = dict_index_.emplace(&items, std::move(fresh)).first;
      }
      auto& index = found->second.index;
      auto it = index.find(h);
      if (it != index.end()) {
        items[it->second].second = std::move(value);  // Python: later value wins, order kept
        return absl::OkStatus();
      }
      index.emplace(std::move(h), items.size());
    }
    items.emplace_back(std::move(key), std::move(value));
    return absl::OkStatus();
  }

  absl::StatusOr<PickleValue*> TopValue(const char* what) {
    NINO_ASSIGN_OR_RETURN(auto top, Top());
    if (top->tag != Item::Tag::kValue) {
      return DataLoss(absl::StrCat(what, " target is ", Describe(*top)));
    }
    return &top->value;
  }

  // ---- globals ------------------------------------------------------------------------------
  absl::StatusOr<Item> ResolveGlobal(std::string_view module, std::string_view name) const {
    Item it;
    it.tag = Item::Tag::kGlobal;
    it.global_name = absl::StrCat(Printable(module), ".", Printable(name));
    if (module == "collections" && name == "OrderedDict") {
      it.global = GlobalId::kOrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      it.global = GlobalId::kRebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      it.global = GlobalId::kRebuildParameter;
    } else if (module == "torch" && name == "Size") {
      it.global = GlobalId::kTorchSize;
    } else if (module == "_codecs" && name == "encode") {
      it.global = GlobalId::kCodecsEncode;
    } else if ((module == "__builtin__" || module == "builtins") && name == "bytes") {
      it.global = GlobalId::kBytes;
    } else if (module == "torch" && StorageTypeToDtype(std::string(name), &it.storage_dtype)) {
      it.global = GlobalId::kStorageType;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unsupported pickle global '%s' (opcode %s at byte offset %d); supported: "
          "collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
          "torch._utils._rebuild_parameter, torch.<Type>Storage, torch.Size",
          it.global_name, OpName(static_cast<uint8_t>(op_)), op_pos_));
    }
    return it;
  }

  // ---- calls (REDUCE / NEWOBJ) --------------------------------------------------------------
  absl::StatusOr<PickleValue> Call(const Item& fn, const PickleValue& args) {
    const auto& a = args.items();
    switch (fn.global) {
      case GlobalId::kOrderedDict: {
        PickleValue d = PickleValue::Dict({}, /*ordered=*/true);
        if (a.empty()) return d;
        if (a.size() == 1 && a[0].is_dict()) {
          for (const auto& kv : a[0].dict_items()) {
            NINO_RETURN_IF_ERROR(SetItem(d, kv.first, kv.second));
          }
          return d;
        }
        if (a.size() == 1 && (a[0].is_list() || a[0].is_tuple())) {
          for (const auto& p : a[0].items()) {
            if (!(p.is_list() || p.is_tuple()) || p.items().size() != 2) {
              return InvalidArg("OrderedDict(...) argument is not a sequence of pairs");
            }
            NINO_RETURN_IF_ERROR(SetItem(d, p.items()[0], p.items()[1]));
          }
          return d;
        }
        return InvalidArg(absl::StrCat("OrderedDict called with ", args.DebugString(1)));
      }
      case GlobalId::kRebuildTensorV2:
        return RebuildTensorV2(a);
      case GlobalId::kRebuildParameter: {
        if (a.size() < 2 || a.size() > 3 || !a[0].is_tensor() || !a[1].is_bool()) {
          return InvalidArg(absl::StrCat("_rebuild_parameter expects (tensor, bool, hooks), got ",
                                         args.DebugString(1)));
        }
        torch::Tensor t = OwnedTensor(a[0].as_tensor());
        if (a[1].as_bool() && t.is_floating_point()) t.set_requires_grad(true);
        return PickleValue::FromTensor(t);
      }
      case GlobalId::kTorchSize: {
        if (a.empty()) return PickleValue::Tuple({});
        if (a.size() == 1 && (a[0].is_tuple() || a[0].is_list())) {
          for (const auto& d : a[0].items()) {
            if (!d.is_int()) return InvalidArg("torch.Size element is not an int");
          }
          return PickleValue::Tuple(a[0].items());
        }
        return InvalidArg(absl::StrCat("torch.Size called with ", args.DebugString(1)));
      }
      case GlobalId::kCodecsEncode: {
        if (a.size() != 2 || !a[0].is_string() || !a[1].is_string() ||
            (a[1].as_string() != "latin1" && a[1].as_string() != "latin-1")) {
          return InvalidArg(absl::StrCat("_codecs.encode supports (str, 'latin1') only, got ",
                                         args.DebugString(1)));
        }
        // Decode UTF-8 (validated when read) into code points, each must be < 256.
        const std::string& s = a[0].as_string();
        std::string out;
        for (size_t i = 0; i < s.size();) {
          unsigned char c = static_cast<unsigned char>(s[i]);
          if (c < 0x80) {
            out += static_cast<char>(c);
            i += 1;
          } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
            unsigned cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
            if (cp > 0xFF) return InvalidArg("_codecs.encode: code point beyond latin1");
            out += static_cast<char>(cp);
            i += 2;
          } else {
            return InvalidArg("_codecs.encode: code point beyond latin1");
          }
        }
        return PickleValue::Bytes(std::move(out));
      }
      case GlobalId::kBytes:
        if (a.empty()) return PickleValue::Bytes("");
        return InvalidArg(absl::StrCat("bytes called with ", args.DebugString(1)));
      case GlobalId::kStorageType:
        return InvalidArg(absl::StrCat("calling ", fn.global_name, " is not supported"));
    }
    return InvalidArg("unknown callable");
  }

  // Storage tensors (loader output) must never escape: copy them.
  torch::Tensor OwnedTensor(const torch::Tensor& t) {
    auto it = storage_impls_.find(t.unsafeGetTensorImpl());
    if (it == storage_impls_.end()) return t;
    if (t.scalar_type() == torch::kBool) return t.view(torch::kUInt8).ne(0);
    return t.clone();
  }

  static std::string Join(const std::vector<int64_t>& v) {
    return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
  }

  absl::StatusOr<PickleValue> RebuildTensorV2(const std::vector<PickleValue>& a) {
    if (a.size() < 6 || a.size() > 7) {
      return InvalidArg(
          absl::StrFormat("_rebuild_tensor_v2 expects 6 or 7 arguments, got %d", a.size()));
    }
    if (!a[0].is_tensor() || !storage_impls_.count(a[0].as_tensor().unsafeGetTensorImpl())) {
      return InvalidArg(absl::StrCat("_rebuild_tensor_v2: first argument is a ", a[0].kind_name(),
                                     ", not a storage persistent id"));
    }
    if (!a[1].is_int() || !(a[2].is_tuple() || a[2].is_list()) ||
        !(a[3].is_tuple() || a[3].is_list()) || !a[4].is_bool()) {
      return InvalidArg(
          "_rebuild_tensor_v2 expects (storage, int offset, size tuple, stride "
          "tuple, bool requires_grad, hooks)");
    }
    const torch::Tensor& storage = a[0].as_tensor();
    const std::string& key = storage_keys_.at(storage.unsafeGetTensorImpl());
    const int64_t offset = a[1].as_int();
    const auto& size_v = a[2].items();
    const auto& stride_v = a[3].items();
    if (size_v.size() != stride_v.size()) {
      return DataLoss(absl::StrFormat("tensor size has %d dims but stride has %d", size_v.size(),
                                      stride_v.size()));
    }
    if (size_v.size() > opt_.max_dims) {
      return InvalidArg(
          absl::StrFormat("tensor has %d dims (limit %d)", size_v.size(), opt_.max_dims));
    }
    std::vector<int64_t> sizes, strides;
    for (size_t i = 0; i < size_v.size(); ++i) {
      if (!size_v[i].is_int() || !stride_v[i].is_int()) {
        return DataLoss("tensor size/stride entries must be ints");
      }
      sizes.push_back(size_v[i].as_int());
      strides.push_back(stride_v[i].as_int());
      if (sizes.back() < 0 || strides.back() < 0) {
        return DataLoss(absl::StrCat("negative tensor size or stride: size ", Join(sizes),
                                     " stride ", Join(strides)));
      }
    }
    if (offset < 0) return DataLoss(absl::StrCat("negative storage offset ", offset));
    const int64_t storage_numel = storage.numel();
    __int128 numel = 1;
    __int128 last = offset;  // index of the last element addressed
    bool empty = false;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] == 0) empty = true;
      numel *= sizes[i];
      if (numel > (static_cast<__int128>(1) << 62)) numel = static_cast<__int128>(1) << 62;
      if (sizes[i] > 0) last += static_cast<__int128>(sizes[i] - 1) * strides[i];
      if (last > (static_cast<__int128>(1) << 100)) last = static_cast<__int128>(1) << 100;
    }
    torch::Tensor t;
    try {
      if (empty) {
        if (offset > storage_numel) {
          return DataLoss(absl::StrFormat("storage offset %d beyond storage '%s' of %d elements",
                                          offset, Printable(key), storage_numel));
        }
        t = torch::empty(sizes, torch::TensorOptions().dtype(storage.scalar_type()));
      } else {
        if (last >= storage_numel) {
          return DataLoss(absl::StrFormat(
              "tensor view (size %s, stride %s, offset %d) needs %d elements but storage '%s' "
              "(record data/%s) has only %d",
              Join(sizes), Join(strides), offset,
              static_cast<int64_t>(
                  std::min<__int128>(last + 1, std::numeric_limits<int64_t>::max())),
              Printable(key), Printable(key), storage_numel));
        }
        const __int128 limit = std::max<int64_t>(storage_numel, int64_t{1} << 26);
        if (numel > limit) {
          return InvalidArg(absl::StrFormat(
              "tensor of %d elements expands a storage of %d elements (limit %d)",
              static_cast<int64_t>(numel), storage_numel, static_cast<int64_t>(limit)));
        }
        const bool is_bool = storage.scalar_type() == torch::kBool;
        torch::Tensor base = is_bool ? storage.view(torch::kUInt8) : storage;
        t = base.as_strided(sizes, strides, offset).clone(at::MemoryFormat::Contiguous);
        if (is_bool) t = t.ne(0);
      }
    } catch (...) {
      return StatusFromCurrentException(
          absl::StrCat("corrupt pickle: cannot build tensor of size ", Join(sizes), Where()),
          absl::StatusCode::kDataLoss);
    }
    if (a[4].as_bool() && t.is_floating_point()) t.set_requires_grad(true);
    return PickleValue::FromTensor(t);
  }

  // ---- persistent ids -----------------------------------------------------------------------
  absl::StatusOr<PickleValue> LoadPersistent(Item pid) {
    const std::vector<Item>* parts = nullptr;
    if (pid.tag == Item::Tag::kRawTuple) {
      parts = pid.raw.get();
    }
    if (parts == nullptr || parts->size() != 5 || (*parts)[0].tag != Item::Tag::kValue ||
        !(*parts)[0].value.is_string() || (*parts)[0].value.as_string() != "storage" ||
        (*parts)[1].tag != Item::Tag::kGlobal || (*parts)[1].global != GlobalId::kStorageType ||
        (*parts)[2].tag != Item::Tag::kValue || !(*parts)[2].value.is_string() ||
        (*parts)[3].tag != Item::Tag::kValue || !(*parts)[3].value.is_string() ||
        (*parts)[4].tag != Item::Tag::kValue || !(*parts)[4].value.is_int()) {
      return InvalidArg(absl::StrCat(
          "persistent id must be ('storage', torch.<Type>Storage, key, location, numel), got ",
          pid.tag == Item::Tag::kValue ? pid.value.DebugString(2) : Describe(pid)));
    }
    const torch::ScalarType dtype = (*parts)[1].storage_dtype;
    const std::string& key = (*parts)[2].value.as_string();
    const int64_t numel = (*parts)[4].value.as_int();
    if (key.empty() || key.size() > 256 || key.find('/') != std::string::npos ||
        key.find('\0') != std::string::npos) {
      return DataLoss(absl::StrCat("invalid storage key '", Printable(key), "'"));
    }
    if (numel < 0) return DataLoss(absl::StrCat("negative storage size ", numel));
    auto cached = storages_.find(key);
    if (cached != storages_.end()) {
      const torch::Tensor& s = cached->second;
      if (s.scalar_type() != dtype || s.numel() != numel) {
        return InvalidArg(absl::StrFormat("storage '%s' is referenced as %s[%d] and as %s[%d]",
                                          Printable(key), c10::toString(s.scalar_type()), s.numel(),
                                          c10::toString(dtype), numel));
      }
      return PickleValue::FromTensor(s);
    }
    if (!loader_) {
      return InvalidArg(absl::StrCat("pickle references storage '", Printable(key),
                                     "' but no storage records are available"));
    }
    NINO_ASSIGN_OR_RETURN(torch::Tensor s, loader_(key, dtype, numel));
    if (!s.defined() || s.dim() != 1 || s.numel() != numel || s.scalar_type() != dtype) {
      return absl::InternalError(
          absl::StrCat("storage loader returned a wrong tensor for key '", Printable(key), "'"));
    }
    storages_.emplace(key, s);
    storage_impls_.insert(s.unsafeGetTensorImpl());
    storage_keys_.emplace(s.unsafeGetTensorImpl(), key);
    return PickleValue::FromTensor(s);
  }

  // ---- main loop ----------------------------------------------------------------------------
  absl::Status Loop();

  absl::Status MemoPut(uint64_t key) {
    NINO_ASSIGN_OR_RETURN(auto top, Top());
    if (memo_.size() >= opt_.max_memo_size && !memo_.count(key)) {
      return InvalidArg(absl::StrFormat("memo exceeds %d entries", opt_.max_memo_size));
    }
    memo_[key] = *top;
    return absl::OkStatus();
  }
  absl::Status MemoGet(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return DataLoss(absl::StrCat("memo key ", key, " not defined"));
    return Push(it->second);
  }

  absl::StatusOr<std::string> ReadText(uint64_t len) {
    std::string_view s;
    NINO_RETURN_IF_ERROR(ReadBytes(len, &s));
    if (!IsValidUtf8(s)) return DataLoss("string is not valid UTF-8");
    return std::string(s);
  }

  // Validates the result (nesting depth, no cycles), makes storage tensors owned, and collects
  // the set of its containers.
  absl::Status Finalize(PickleValue* root, std::unordered_set<const void*>* keep) {
    struct Frame {
      PickleValue* v;
      size_t next;
      int height;  // max height of children seen so far
    };
    std::unordered_map<const void*, int> done;  // container -> height
    std::unordered_set<const void*> active;
    std::vector<Frame> frames;
    auto leaf = [&](PickleValue* v) {
      if (v->is_tensor()) *v = PickleValue::FromTensor(OwnedTensor(v->as_tensor()));
    };
    const std::string too_deep = absl::StrFormat(
        "containers nested deeper than %d levels, or a reference cycle", opt_.max_depth);
    if (ContainerId(*root) == nullptr) {
      leaf(root);
      return absl::OkStatus();
    }
    frames.push_back({root, 0, 0});
    active.insert(ContainerId(*root));
    while (!frames.empty()) {
      Frame& f = frames.back();
      if (f.next == ChildCount(*f.v)) {
        const void* id = ContainerId(*f.v);
        int h = f.height + 1;
        active.erase(id);
        done[id] = h;
        keep->insert(id);
        frames.pop_back();
        if (!frames.empty()) frames.back().height = std::max(frames.back().height, h);
        continue;
      }
      PickleValue* c = Child(*f.v, f.next++);
      const void* id = ContainerId(*c);
      if (id == nullptr) {
        leaf(c);
        continue;
      }
      if (active.count(id)) {
        return absl::InvalidArgumentError("unsupported pickle content: " + too_deep);
      }
      auto it = done.find(id);
      if (it != done.end()) {
        if (static_cast<int>(frames.size()) + it->second > opt_.max_depth) {
          return absl::InvalidArgumentError("unsupported pickle content: " + too_deep);
        }
        f.height = std::max(f.height, it->second);
        continue;
      }
      if (static_cast<int>(frames.size()) + 1 > opt_.max_depth) {
        return absl::InvalidArgumentError("unsupported pickle content: " + too_deep);
      }
      active.insert(id);
      frames.push_back({c, 0, 0});
    }
    return absl::OkStatus();
  }

  // Breaks every container reachable from the stack and memo (except those in `keep`) without
  // recursion, so deep or cyclic garbage cannot overflow the C++ stack or leak.
  void Teardown(const std::unordered_set<const void*>* keep) {
    std::unordered_set<const void*> seen;
    if (keep) seen = *keep;
    std::vector<PickleValue> handles;
    std::vector<PickleValue> work;
    auto add = [&](const PickleValue& v) {
      const void* id = ContainerId(v);
      if (id != nullptr && seen.insert(id).second) {
        handles.push_back(v);
        work.push_back(v);
      }
    };
    auto add_item = [&](const Item& it) {
      add(it.value);
      if (it.raw) {
        for (const Item& r : *it.raw) add(r.value);
      }
    };
    for (const Item& it : stack_) add_item(it);
    for (const auto& kv : memo_) add_item(kv.second);
    for (const auto& kv : dict_index_) add(kv.second.keepalive);
    while (!work.empty()) {
      PickleValue v = std::move(work.back());
      work.pop_back();
      size_t n = ChildCount(v);
      for (size_t i = 0; i < n; ++i) add(*Child(v, i));
    }
    for (PickleValue& h : handles) {
      if (h.is_dict()) {
        h.mutable_dict_items().clear();
      } else {
        h.mutable_items().clear();
      }
    }
    handles.clear();
    stack_.clear();
    marks_.clear();
    memo_.clear();
    dict_index_.clear();
  }

  std::string_view data_;
  const StorageLoader& loader_;
  const PickleReaderOptions& opt_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  int op_ = 256;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Item> memo_;
  struct DictIndex {
    PickleValue keepalive;
    std::unordered_map<std::string, size_t> index;
  };
  std::unordered_map<const void*, DictIndex> dict_index_;
  std::unordered_map<std::string, torch::Tensor> storages_;
  std::unordered_set<const c10::TensorImpl*> storage_impls_;
  std::unordered_map<const c10::TensorImpl*, std::string> storage_keys_;
};

absl::Status Unpickler::Loop() {
  while (true) {
    op_pos_ = pos_;
    op_ = 256;
    if (pos_ >= data_.size()) {
      return absl::DataLossError(absl::StrFormat(
          "truncated pickle: no STOP opcode before the end of data (%d bytes)", data_.size()));
    }
    const uint8_t op = static_cast<uint8_t>(data_[pos_++]);
    op_ = op;
    switch (op) {
      case PROTO: {
        uint8_t v;
        NINO_RETURN_IF_ERROR(ReadLE(&v));
        if (v > 5) {
          return absl::UnimplementedError(
              absl::StrFormat("pickle protocol %d is not supported%s", v, Where()));
        }
        break;
      }
      case FRAME: {
        uint64_t n;
        NINO_RETURN_IF_ERROR(ReadLE(&n));
        NINO_RETURN_IF_ERROR(Need(n));  // frames only group opcodes; check the bound
        break;
      }
      case STOP:
        return absl::OkStatus();

      // ---- constants ----
      case NONE:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::None()));
        break;
      case NEWTRUE:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Bool(true)));
        break;
      case NEWFALSE:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Bool(false)));
        break;
      case BININT: {
        uint32_t v;
        NINO_RETURN_IF_ERROR(ReadLE(&v));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Int(static_cast<int32_t>(v))));
        break;
      }
      case BININT1: {
        uint8_t v;
        NINO_RETURN_IF_ERROR(ReadLE(&v));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Int(v)));
        break;
      }
      case BININT2: {
        uint16_t v;
        NINO_RETURN_IF_ERROR(ReadLE(&v));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Int(v)));
        break;
      }
      case LONG1:
      case LONG4: {
        uint64_t n;
        if (op == LONG1) {
          uint8_t n8;
          NINO_RETURN_IF_ERROR(ReadLE(&n8));
          n = n8;
        } else {
          uint32_t n32;
          NINO_RETURN_IF_ERROR(ReadLE(&n32));
          if (static_cast<int32_t>(n32) < 0) return DataLoss("negative LONG4 byte count");
          n = n32;
        }
        std::string_view b;
        NINO_RETURN_IF_ERROR(ReadBytes(n, &b));
        int64_t v = 0;
        if (n > 0) {
          uint64_t u = 0;
          const size_t k = std::min<uint64_t>(n, 8);
          for (size_t i = 0; i < k; ++i)
            u |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
          const bool neg = (static_cast<uint8_t>(b[n - 1]) & 0x80) != 0;
          if (k < 8 && neg) u |= ~uint64_t{0} << (8 * k);  // sign-extend
          v = static_cast<int64_t>(u);
          if (n > 8) {
            // Wider encodings are accepted only if the extra bytes are pure sign extension.
            const uint8_t ext = neg ? 0xff : 0x00;
            bool fits = ((u >> 63) != 0) == neg;
            for (size_t i = 8; i < n && fits; ++i) fits = static_cast<uint8_t>(b[i]) == ext;
            if (!fits) return InvalidArg("integer does not fit in 64 bits");
          }
        }
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Int(v)));
        break;
      }
      case BINFLOAT: {
        NINO_RETURN_IF_ERROR(Need(8));
        uint64_t u = 0;
        for (size_t i = 0; i < 8; ++i) u = (u << 8) | static_cast<uint8_t>(data_[pos_ + i]);
        pos_ += 8;
        double d;
        std::memcpy(&d, &u, sizeof(d));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Float(d)));
        break;
      }
      case BINUNICODE:
      case SHORT_BINUNICODE:
      case BINUNICODE8: {
        uint64_t n;
        if (op == SHORT_BINUNICODE) {
          uint8_t n8;
          NINO_RETURN_IF_ERROR(ReadLE(&n8));
          n = n8;
        } else if (op == BINUNICODE) {
          uint32_t n32;
          NINO_RETURN_IF_ERROR(ReadLE(&n32));
          n = n32;
        } else {
          NINO_RETURN_IF_ERROR(ReadLE(&n));
        }
        NINO_ASSIGN_OR_RETURN(auto s, ReadText(n));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::String(std::move(s))));
        break;
      }
      case BINBYTES:
      case SHORT_BINBYTES:
      case BINBYTES8: {
        uint64_t n;
        if (op == SHORT_BINBYTES) {
          uint8_t n8;
          NINO_RETURN_IF_ERROR(ReadLE(&n8));
          n = n8;
        } else if (op == BINBYTES) {
          uint32_t n32;
          NINO_RETURN_IF_ERROR(ReadLE(&n32));
          n = n32;
        } else {
          NINO_RETURN_IF_ERROR(ReadLE(&n));
        }
        std::string_view b;
        NINO_RETURN_IF_ERROR(ReadBytes(n, &b));
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Bytes(std::string(b))));
        break;
      }

      // ---- containers ----
      case EMPTY_DICT:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Dict({})));
        break;
      case EMPTY_LIST:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::List({})));
        break;
      case EMPTY_TUPLE:
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::Tuple({})));
        break;
      case MARK:
        if (marks_.size() >= opt_.max_marks) {
          return InvalidArg(absl::StrFormat("more than %d nested MARKs", opt_.max_marks));
        }
        marks_.push_back(stack_.size());
        break;
      case TUPLE: {
        NINO_ASSIGN_OR_RETURN(auto items, PopMark());
        NINO_ASSIGN_OR_RETURN(auto t, MakeTuple(std::move(items)));
        NINO_RETURN_IF_ERROR(Push(std::move(t)));
        break;
      }
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        const size_t n = op - TUPLE1 + 1;
        if (stack_.size() < Floor() + n) return DataLoss("stack underflow");
        std::vector<Item> items;
        for (size_t i = stack_.size() - n; i < stack_.size(); ++i) {
          items.push_back(std::move(stack_[i]));
        }
        stack_.resize(stack_.size() - n);
        NINO_ASSIGN_OR_RETURN(auto t, MakeTuple(std::move(items)));
        NINO_RETURN_IF_ERROR(Push(std::move(t)));
        break;
      }
      case LIST: {
        NINO_ASSIGN_OR_RETURN(auto items, PopMark());
        std::vector<PickleValue> vals;
        for (Item& it : items) {
          NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(it), "list item"));
          vals.push_back(std::move(v));
        }
        NINO_RETURN_IF_ERROR(PushValue(PickleValue::List(std::move(vals))));
        break;
      }
      case DICT: {
        NINO_ASSIGN_OR_RETURN(auto items, PopMark());
        if (items.size() % 2 != 0) return DataLoss("odd number of items for DICT");
        PickleValue d = PickleValue::Dict({});
        for (size_t i = 0; i < items.size(); i += 2) {
          NINO_ASSIGN_OR_RETURN(auto k, AsValue(std::move(items[i]), "dict key"));
          NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(items[i + 1]), "dict value"));
          NINO_RETURN_IF_ERROR(SetItem(d, std::move(k), std::move(v)));
        }
        NINO_RETURN_IF_ERROR(PushValue(std::move(d)));
        break;
      }
      case APPEND: {
        NINO_ASSIGN_OR_RETURN(auto it, Pop());
        NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(it), "list item"));
        NINO_ASSIGN_OR_RETURN(auto list, TopValue("APPEND"));
        if (!list->is_list()) return DataLoss(absl::StrCat("APPEND to a ", list->kind_name()));
        list->mutable_items().push_back(std::move(v));
        break;
      }
      case APPENDS: {
        NINO_ASSIGN_OR_RETURN(auto items, PopMark());
        NINO_ASSIGN_OR_RETURN(auto list, TopValue("APPENDS"));
        if (!list->is_list()) return DataLoss(absl::StrCat("APPENDS to a ", list->kind_name()));
        for (Item& it : items) {
          NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(it), "list item"));
          list->mutable_items().push_back(std::move(v));
        }
        break;
      }
      case SETITEM: {
        NINO_ASSIGN_OR_RETURN(auto vi, Pop());
        NINO_ASSIGN_OR_RETURN(auto ki, Pop());
        NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(vi), "dict value"));
        NINO_ASSIGN_OR_RETURN(auto k, AsValue(std::move(ki), "dict key"));
        NINO_ASSIGN_OR_RETURN(auto d, TopValue("SETITEM"));
        NINO_RETURN_IF_ERROR(SetItem(*d, std::move(k), std::move(v)));
        break;
      }
      case SETITEMS: {
        NINO_ASSIGN_OR_RETURN(auto items, PopMark());
        if (items.size() % 2 != 0) return DataLoss("odd number of items for SETITEMS");
        NINO_ASSIGN_OR_RETURN(auto d, TopValue("SETITEMS"));
        for (size_t i = 0; i < items.size(); i += 2) {
          NINO_ASSIGN_OR_RETURN(auto k, AsValue(std::move(items[i]), "dict key"));
          NINO_ASSIGN_OR_RETURN(auto v, AsValue(std::move(items[i + 1]), "dict value"));
          NINO_RETURN_IF_ERROR(SetItem(*d, std::move(k), std::move(v)));
        }
        break;
      }

      // ---- stack / memo ----
      case POP:
        if (stack_.size() > Floor()) {
          stack_.pop_back();
        } else {
          NINO_ASSIGN_OR_RETURN(auto discard, PopMark());
          (void)discard;
        }
        break;
      case POP_MARK: {
        NINO_ASSIGN_OR_RETURN(auto discard, PopMark());
        (void)discard;
        break;
      }
      case DUP: {
        NINO_ASSIGN_OR_RETURN(auto top, Top());
        Item copy = *top;
        NINO_RETURN_IF_ERROR(Push(std::move(copy)));
        break;
      }
      case MEMOIZE:
        NINO_RETURN_IF_ERROR(MemoPut(memo_.size()));
        break;
      case BINPUT: {
        uint8_t k;
        NINO_RETURN_IF_ERROR(ReadLE(&k));
        NINO_RETURN_IF_ERROR(MemoPut(k));
        break;
      }
      case LONG_BINPUT: {
        uint32_t k;
        NINO_RETURN_IF_ERROR(ReadLE(&k));
        NINO_RETURN_IF_ERROR(MemoPut(k));
        break;
      }
      case PUT: {
        uint64_t k;
        NINO_RETURN_IF_ERROR(ReadDecimalLine(&k));
        NINO_RETURN_IF_ERROR(MemoPut(k));
        break;
      }
      case BINGET: {
        uint8_t k;
        NINO_RETURN_IF_ERROR(ReadLE(&k));
        NINO_RETURN_IF_ERROR(MemoGet(k));
        break;
      }
      case LONG_BINGET: {
        uint32_t k;
        NINO_RETURN_IF_ERROR(ReadLE(&k));
        NINO_RETURN_IF_ERROR(MemoGet(k));
        break;
      }
      case GET: {
        uint64_t k;
        NINO_RETURN_IF_ERROR(ReadDecimalLine(&k));
        NINO_RETURN_IF_ERROR(MemoGet(k));
        break;
      }

      // ---- globals and calls ----
      case GLOBAL: {
        std::string_view module, name;
        NINO_RETURN_IF_ERROR(ReadLine(&module));
        NINO_RETURN_IF_ERROR(ReadLine(&name));
        NINO_ASSIGN_OR_RETURN(auto g, ResolveGlobal(module, name));
        NINO_RETURN_IF_ERROR(Push(std::move(g)));
        break;
      }
      case STACK_GLOBAL: {
        NINO_ASSIGN_OR_RETURN(auto name, Pop());
        NINO_ASSIGN_OR_RETURN(auto module, Pop());
        if (name.tag != Item::Tag::kValue || !name.value.is_string() ||
            module.tag != Item::Tag::kValue || !module.value.is_string()) {
          return DataLoss("STACK_GLOBAL expects two strings");
        }
        NINO_ASSIGN_OR_RETURN(auto g,
                              ResolveGlobal(module.value.as_string(), name.value.as_string()));
        NINO_RETURN_IF_ERROR(Push(std::move(g)));
        break;
      }
      case REDUCE:
      case NEWOBJ: {
        NINO_ASSIGN_OR_RETURN(auto args_item, Pop());
        NINO_ASSIGN_OR_RETURN(auto fn, Pop());
        if (fn.tag != Item::Tag::kGlobal) {
          return DataLoss(absl::StrCat(OpName(op), " callable is ", Describe(fn)));
        }
        NINO_ASSIGN_OR_RETURN(auto args, AsValue(std::move(args_item), "call arguments"));
        if (!args.is_tuple()) {
          return DataLoss(
              absl::StrCat(OpName(op), " arguments are a ", args.kind_name(), ", not a tuple"));
        }
        if (op == NEWOBJ) {
          // cls.__new__(cls, *args): only OrderedDict, which ignores the arguments.
          if (fn.global != GlobalId::kOrderedDict) {
            return InvalidArg(absl::StrCat("NEWOBJ of ", fn.global_name, " is not supported"));
          }
          NINO_RETURN_IF_ERROR(PushValue(PickleValue::Dict({}, /*ordered=*/true)));
          break;
        }
        NINO_ASSIGN_OR_RETURN(auto result, Call(fn, args));
        NINO_RETURN_IF_ERROR(PushValue(std::move(result)));
        break;
      }
      case BUILD: {
        NINO_ASSIGN_OR_RETURN(auto state, Pop());
        NINO_ASSIGN_OR_RETURN(auto target, TopValue("BUILD"));
        // OrderedDict state (e.g. state_dict()._metadata) and tensor state are ignored.
        if (!target->is_dict() && !target->is_tensor()) {
          return InvalidArg(absl::StrCat("BUILD on a ", target->kind_name(), " is not supported"));
        }
        break;
      }
      case BINPERSID: {
        NINO_ASSIGN_OR_RETURN(auto pid, Pop());
        NINO_ASSIGN_OR_RETURN(auto v, LoadPersistent(std::move(pid)));
        NINO_RETURN_IF_ERROR(PushValue(std::move(v)));
        break;
      }

      default: {
        const char* name = OpName(op);
        if (name != nullptr) {
          return absl::UnimplementedError(absl::StrFormat(
              "unsupported pickle opcode %s (0x%02x) at byte offset %d", name, op, op_pos_));
        }
        return absl::DataLossError(absl::StrFormat(
            "corrupt pickle: invalid opcode 0x%02x at byte offset %d", op, op_pos_));
      }
    }
  }
}

}  // namespace

bool StorageTypeToDtype(const std::string& storage_name, torch::ScalarType* dtype) {
  for (const auto& s : kStorageNames) {
    if (storage_name == s.name) {
      *dtype = s.dtype;
      return true;
    }
  }
  return false;
}

const char* DtypeToStorageType(torch::ScalarType dtype) {
  for (const auto& s : kStorageNames) {
    if (s.dtype == dtype) return s.name;
  }
  return nullptr;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    i += len;
  }
  return true;
}

absl::StatusOr<PickleValue> ReadPickle(std::string_view data, const StorageLoader& loader,
                                       const PickleReaderOptions& options) {
  try {
    Unpickler u(data, loader, options);
    return u.Run();
  } catch (...) {
    return StatusFromCurrentException("unpickling failed", absl::StatusCode::kInternal);
  }
}

}  // namespace nino::io
