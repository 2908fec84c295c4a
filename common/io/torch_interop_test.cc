// Interop with Debian's Python torch (1.13, /usr/bin/python3; plain `python3` may be a pyenv
// without torch): (a) Python torch.load()s a file written by SaveTorchFile and checks it,
// including that the state dict comes back as an OrderedDict that nn.Module.load_state_dict
// accepts; (b) Python torch.save()s a model.state_dict() and other containers that
// LoadTorchFile then reads; (c) Python re-saves our file and we get our value back.
// One Python process does all of it (importing torch takes seconds). Skips when
// /usr/bin/python3 cannot import torch.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/torch_file.h"
#include "gtest/gtest.h"

namespace nino::io {
namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr int kSkipExit = 77;

constexpr char kScript[] = R"PY(
import sys
try:
    import torch
except Exception as e:  # no torch for this interpreter
    print("cannot import torch:", e)
    sys.exit(77)
import collections, math

cpp_file, out = sys.argv[1], sys.argv[2]

# ---- (a) read the file written by SaveTorchFile ----
d = torch.load(cpp_file)
assert type(d) is dict, type(d)
assert list(d.keys()) == ["state_dict", "meta", "dtypes", "noncontig", "scalar", "empty_t"], list(d)
sd = d["state_dict"]
assert type(sd) is collections.OrderedDict, type(sd)
assert list(sd.keys()) == ["weight", "bias"], list(sd)
m = torch.nn.Linear(3, 2)
m.load_state_dict(sd)
y = m(torch.tensor([[1.0, 2.0, 3.0]]))
assert torch.allclose(y, torch.tensor([[5.0, 12.0]])), y
meta = d["meta"]
assert meta["name"] == "Grüße, 東京, 🚀", meta["name"]
assert meta["step"] == 2**40 and meta["neg"] == -2**63 and meta["max"] == 2**63 - 1
assert meta["one"] == {"k": 1} and meta["lst"] == [5], (meta["one"], meta["lst"])
assert meta["tup"] == (1, 2, 3, 4) and type(meta["tup"]) is tuple
assert meta["f"] == 1.5 and math.isnan(meta["nan"]) and meta["inf"] == float("-inf")
assert meta["flag"] is True and meta["none"] is None
assert type(meta["raw"]) is bytes and meta["raw"] == b"\x00\xff\x80a", meta["raw"]
assert meta["empty"] == b"" and type(meta["empty"]) is bytes
assert meta[7] == "int key"
exp = {
    "f64": torch.arange(4, dtype=torch.float64) / 3,
    "f16": torch.tensor([0.5, -1.25, 65504.0], dtype=torch.float16),
    "bf16": torch.tensor([1.0, -2.5, 256.0], dtype=torch.bfloat16),
    "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
    "i16": torch.tensor([-32768, 7, 32767], dtype=torch.int16),
    "i32": torch.tensor([-2**31, 5, 2**31 - 1], dtype=torch.int32),
    "i64": torch.tensor([-2**63, 1, 2**63 - 1], dtype=torch.int64),
    "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
}
assert list(d["dtypes"].keys()) == list(exp.keys())
for k, v in exp.items():
    got = d["dtypes"][k]
    assert got.dtype == v.dtype and torch.equal(got, v), (k, got, v)
nc = d["noncontig"]
assert torch.equal(nc, torch.arange(12.0).reshape(3, 4).t()) and nc.is_contiguous()
assert d["scalar"].dim() == 0 and d["scalar"].item() == 2.5
assert d["empty_t"].shape == (0, 3)
print("READ_OK")

# ---- (c) re-save what we read ----
torch.save(d, out + "/py_resaved.pt")

# ---- (b) files for the C++ reader ----
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
with torch.no_grad():
    for i, p in enumerate(model.parameters()):
        p.copy_(torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) * 0.25 - i)
    model[1].running_mean.fill_(0.5)
    model[1].running_var.fill_(2.0)
    model[1].num_batches_tracked.fill_(7)
torch.save(model.state_dict(), out + "/py_state_dict.pt")

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
other = {
    "views": [base, base[1:3, 2:5], base.t(), base[:, 1]],
    "param": torch.nn.Parameter(torch.ones(2, 2)),
    "size": torch.Size([3, 4]),
    "bytes": b"\x00\xffabc",
    "empty_bytes": b"",
    "one": {"only": 1},
    "list1": [7],
    "tuple1": (8,),
    "ints": [0, 255, 256, 65535, 65536, -1, 2**31, -2**31 - 1, 2**40, 2**55, 2**63 - 1, -2**63],
    "floats": [1.5, float("inf"), -0.0],
    "text": "Grüße, 東京, 🚀",
    "nested": collections.OrderedDict([("b", {"x": (1, 2)}), ("a", None)]),
    "dtypes": exp,
    "scalar": torch.tensor(3),
    "empty": torch.zeros(0, 5),
    "flags": (True, False, None),
    "int_keys": {1: "a", 2: "b"},
}
torch.save(other, out + "/py_other.pt")
print("WRITE_OK")
)PY";

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(t != nullptr ? t : "/tmp", "/torch_interop.", ::getpid());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

PickleValue S(const std::string& s) { return PickleValue::String(s); }
PickleValue I(int64_t v) { return PickleValue::Int(v); }
PickleValue T(torch::Tensor t) { return PickleValue::FromTensor(std::move(t)); }

PickleValue CppValue() {
  using PV = PickleValue;
  NamedTensors sd = {{"weight", torch::arange(6, torch::kFloat32).reshape({2, 3}) * 0.5},
                     {"bias", torch::tensor({1.f, -1.f})}};
  std::vector<std::pair<PV, PV>> meta = {
      {S("name"), S("Grüße, 東京, 🚀")},
      {S("step"), I(int64_t{1} << 40)},
      {S("neg"), I(std::numeric_limits<int64_t>::min())},
      {S("max"), I(std::numeric_limits<int64_t>::max())},
      {S("one"), PV::Dict({{S("k"), I(1)}})},
      {S("lst"), PV::List({I(5)})},
      {S("tup"), PV::Tuple({I(1), I(2), I(3), I(4)})},
      {S("f"), PV::Float(1.5)},
      {S("nan"), PV::Float(std::numeric_limits<double>::quiet_NaN())},
      {S("inf"), PV::Float(-std::numeric_limits<double>::infinity())},
      {S("flag"), PV::Bool(true)},
      {S("none"), PV::None()},
      {S("raw"), PV::Bytes(std::string("\x00\xff\x80"
                                       "a",
                                       4))},
      {S("empty"), PV::Bytes("")},
      {I(7), S("int key")},
  };
  std::vector<std::pair<PV, PV>> dtypes = {
      {S("f64"), T(torch::arange(4, torch::kFloat64) / 3)},
      {S("f16"), T(torch::tensor({0.5f, -1.25f, 65504.f}).to(torch::kFloat16))},
      {S("bf16"), T(torch::tensor({1.f, -2.5f, 256.f}).to(torch::kBFloat16))},
      {S("i8"), T(torch::tensor({-128, 0, 127}).to(torch::kInt8))},
      {S("i16"), T(torch::tensor({-32768, 7, 32767}).to(torch::kInt16))},
      {S("i32"), T(torch::tensor({std::numeric_limits<int32_t>::min(), 5,
                                  std::numeric_limits<int32_t>::max()})
                       .to(torch::kInt32))},
      {S("i64"), T(torch::tensor({std::numeric_limits<int64_t>::min(), int64_t{1},
                                  std::numeric_limits<int64_t>::max()}))},
      {S("u8"), T(torch::tensor({0, 128, 255}).to(torch::kUInt8))},
      {S("bool"), T(torch::tensor({true, false, true}))},
  };
  return PV::Dict({
      {S("state_dict"), StateDictValue(sd)},
      {S("meta"), PV::Dict(meta)},
      {S("dtypes"), PV::Dict(dtypes)},
      {S("noncontig"), T(torch::arange(12, torch::kFloat32).reshape({3, 4}).t())},
      {S("scalar"), T(torch::tensor(2.5f))},
      {S("empty_t"), T(torch::empty({0, 3}))},
  });
}

const PickleValue& At(const PickleValue& d, const std::string& key) {
  const PickleValue* v = d.Find(key);
  if (v == nullptr) throw std::runtime_error("missing key " + key + " in " + d.DebugString(1));
  return *v;
}

TEST(TorchInterop, PythonReadsOursAndWeReadPythons) {
  struct stat st;
  if (::stat(kPython, &st) != 0) GTEST_SKIP() << kPython << " not found";
  const std::string dir = TmpDir();
  const std::string script = dir + "/interop.py";
  {
    std::ofstream out(script);
    out << kScript;
  }
  const std::string cpp_file = dir + "/cpp_written.pt";
  const PickleValue ours = CppValue();
  ASSERT_TRUE(SaveTorchFile(cpp_file, ours).ok());

  const std::string log = dir + "/python.log";
  const std::string cmd =
      absl::StrCat("cd '", dir, "' && PYTHONDONTWRITEBYTECODE=1 timeout 120 ", kPython, " '",
                   script, "' '", cpp_file, "' '", dir, "' > '", log, "' 2>&1");
  const int rc = std::system(cmd.c_str());
  const std::string output = ReadFile(log);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == kSkipExit) {
    GTEST_SKIP() << kPython << " cannot import torch: " << output;
  }
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "python failed (" << rc << "):\n" << output;
  EXPECT_TRUE(absl::StrContains(output, "READ_OK")) << output;
  EXPECT_TRUE(absl::StrContains(output, "WRITE_OK")) << output;

  // (b1) torch.save(model.state_dict()): an OrderedDict with _metadata state (BUILD).
  {
    auto r = LoadTorchFile(dir + "/py_state_dict.pt");
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->is_ordered_dict()) << r->DebugString();
    auto named = ToNamedTensors(*r);
    ASSERT_TRUE(named.ok()) << named.status();
    std::vector<std::string> keys;
    for (const auto& kv : *named) keys.push_back(kv.first);
    EXPECT_EQ(keys, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                              "1.running_mean", "1.running_var",
                                              "1.num_batches_tracked", "2.weight", "2.bias"}));
    const std::vector<std::string> params = {"0.weight", "0.bias",   "1.weight",
                                             "1.bias",   "2.weight", "2.bias"};
    for (size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor& t = At(*r, params[i]).as_tensor();
      SCOPED_TRACE(params[i]);
      auto expect = torch::arange(t.numel(), torch::kFloat32).reshape(t.sizes()) * 0.25 -
                    static_cast<double>(i);
      EXPECT_TRUE(torch::equal(t, expect)) << t;
      EXPECT_FALSE(t.requires_grad());
    }
    EXPECT_EQ(At(*r, "0.weight").as_tensor().sizes().vec(), (std::vector<int64_t>{3, 4}));
    EXPECT_TRUE(torch::equal(At(*r, "1.running_mean").as_tensor(), torch::full({3}, 0.5f)));
    EXPECT_TRUE(torch::equal(At(*r, "1.running_var").as_tensor(), torch::full({3}, 2.f)));
    const torch::Tensor& nbt = At(*r, "1.num_batches_tracked").as_tensor();
    EXPECT_EQ(nbt.dim(), 0);
    EXPECT_EQ(nbt.scalar_type(), torch::kInt64);
    EXPECT_EQ(nbt.item<int64_t>(), 7);
  }

  // (b2) other containers, views of one shared storage, Parameter, torch.Size, bytes.
  {
    auto r = LoadTorchFile(dir + "/py_other.pt");
    ASSERT_TRUE(r.ok()) << r.status();
    const PickleValue& o = *r;
    auto base = torch::arange(24, torch::kFloat32).reshape({4, 6});
    const auto& views = At(o, "views").items();
    ASSERT_EQ(views.size(), 4u);
    EXPECT_TRUE(torch::equal(views[0].as_tensor(), base));
    EXPECT_TRUE(torch::equal(views[1].as_tensor(), base.slice(0, 1, 3).slice(1, 2, 5)));
    EXPECT_TRUE(torch::equal(views[2].as_tensor(), base.t()));
    EXPECT_TRUE(torch::equal(views[3].as_tensor(), base.select(1, 1)));
    for (const auto& v : views) EXPECT_TRUE(v.as_tensor().is_contiguous());
    // Each view is an independent copy.
    EXPECT_NE(views[0].as_tensor().data_ptr(), views[2].as_tensor().data_ptr());
    const torch::Tensor& param = At(o, "param").as_tensor();
    EXPECT_TRUE(torch::equal(param, torch::ones({2, 2})));
    EXPECT_TRUE(param.requires_grad());
    EXPECT_EQ(At(o, "size").DebugString(), "(3, 4)");
    EXPECT_EQ(At(o, "bytes").kind(), PickleValue::Kind::kBytes);
    EXPECT_EQ(At(o, "bytes").as_string(), std::string("\x00\xff"
                                                      "abc",
                                                      5));
    EXPECT_EQ(At(o, "empty_bytes").kind(), PickleValue::Kind::kBytes);
    EXPECT_EQ(At(o, "empty_bytes").as_string(), "");
    EXPECT_EQ(At(o, "one").DebugString(), "{'only': 1}");
    EXPECT_EQ(At(o, "list1").DebugString(), "[7]");
    EXPECT_EQ(At(o, "tuple1").DebugString(), "(8,)");
    std::vector<int64_t> ints;
    for (const auto& v : At(o, "ints").items()) ints.push_back(v.as_int());
    EXPECT_EQ(ints, (std::vector<int64_t>{0, 255, 256, 65535, 65536, -1, int64_t{1} << 31,
                                          -(int64_t{1} << 31) - 1, int64_t{1} << 40,
                                          int64_t{1} << 55, std::numeric_limits<int64_t>::max(),
                                          std::numeric_limits<int64_t>::min()}));
    const auto& floats = At(o, "floats").items();
    ASSERT_EQ(floats.size(), 3u);
    EXPECT_EQ(floats[0].as_float(), 1.5);
    EXPECT_TRUE(std::isinf(floats[1].as_float()));
    EXPECT_TRUE(std::signbit(floats[2].as_float()));
    EXPECT_EQ(At(o, "text").as_string(), "Grüße, 東京, 🚀");
    EXPECT_TRUE(At(o, "nested").is_ordered_dict());
    EXPECT_EQ(At(o, "nested").DebugString(), "OrderedDict{'b': {'x': (1, 2)}, 'a': None}");
    const PickleValue& dt = At(o, "dtypes");
    const PickleValue& our_dt = At(ours, "dtypes");
    ASSERT_EQ(dt.dict_items().size(), our_dt.dict_items().size());
    for (size_t i = 0; i < dt.dict_items().size(); ++i) {
      const auto& [k, v] = dt.dict_items()[i];
      SCOPED_TRACE(k.as_string());
      EXPECT_EQ(k.as_string(), our_dt.dict_items()[i].first.as_string());
      const torch::Tensor& want = our_dt.dict_items()[i].second.as_tensor();
      EXPECT_EQ(v.as_tensor().scalar_type(), want.scalar_type());
      EXPECT_TRUE(torch::equal(v.as_tensor(), want));
    }
    EXPECT_EQ(At(o, "scalar").as_tensor().dim(), 0);
    EXPECT_EQ(At(o, "scalar").as_tensor().item<int64_t>(), 3);
    EXPECT_EQ(At(o, "empty").as_tensor().sizes().vec(), (std::vector<int64_t>{0, 5}));
    EXPECT_EQ(At(o, "flags").DebugString(), "(True, False, None)");
    EXPECT_EQ(At(o, "int_keys").DebugString(), "{1: 'a', 2: 'b'}");
  }

  // (c) Python's re-save of our file reads back as the value we wrote.
  {
    auto r = LoadTorchFile(dir + "/py_resaved.pt");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->DebugString(5), ours.DebugString(5));
    const PickleValue& sd = At(*r, "state_dict");
    EXPECT_TRUE(sd.is_ordered_dict());
    EXPECT_TRUE(torch::equal(At(sd, "weight").as_tensor(),
                             At(At(ours, "state_dict"), "weight").as_tensor()));
    EXPECT_TRUE(torch::equal(At(*r, "noncontig").as_tensor(), At(ours, "noncontig").as_tensor()));
    EXPECT_EQ(At(At(*r, "meta"), "raw").as_string(), At(At(ours, "meta"), "raw").as_string());
  }
}

}  // namespace
}  // namespace nino::io
