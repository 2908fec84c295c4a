// Tests for common/io/torch_file.h and the unpickler behind it: the official NiNo checkpoints,
// save -> load round trips, and corrupt / hostile inputs (each must give a clear error that
// names the file, never a crash).
#include "common/io/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/pickle_reader.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace nino::io {
namespace {

// ---- helpers -------------------------------------------------------------------------------

// The official checkpoints are compared with: those tests skip without ../shared.
using nino::testing::SharedDir;

std::string CheckpointPath(const std::string& name) {
  return SharedDir() + "/reference/checkpoints/" + name;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  std::string base = t != nullptr ? t : "/tmp";
  static int counter = 0;
  std::string dir = absl::StrCat(base, "/torch_file_test.", ::getpid(), ".", counter++);
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

// A zip archive in torch.save layout (root "archive") from (record name, bytes) pairs.
std::string MakeArchive(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out;
  caffe2::serialize::PyTorchStreamWriter w([&out](const void* p, size_t n) {
    out.append(static_cast<const char*>(p), n);
    return n;
  });
  for (const auto& [name, bytes] : records) w.writeRecord(name, bytes.data(), bytes.size());
  w.writeEndOfFile();
  return out;
}

// All records of an archive (names relative to its root).
std::map<std::string, std::string> ReadRecords(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader r(path);
  std::map<std::string, std::string> out;
  for (const std::string& name : r.getAllRecords()) {
    auto [ptr, n] = r.getRecord(name);
    out[name] = std::string(static_cast<const char*>(ptr.get()), n);
  }
  return out;
}

// Tiny pickle assembler for hand-made inputs.
struct Pk {
  std::string s = std::string("\x80\x02", 2);
  Pk& op(char c) {
    s.push_back(c);
    return *this;
  }
  Pk& u8(uint8_t v) {
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Pk& raw(const std::string& b) {
    s += b;
    return *this;
  }
  Pk& str(const std::string& v) {  // BINUNICODE
    op('X');
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v.size() >> (8 * i)));
    return raw(v);
  }
  Pk& global(const std::string& m, const std::string& n) {
    return op('c').raw(m + "\n" + n + "\n");
  }
  Pk& int1(uint8_t v) { return op('K').u8(v); }
  // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, sizes, strides)
  Pk& tensor(const std::string& type, const std::string& key, int numel, int offset,
             const std::vector<int>& sizes, const std::vector<int>& strides) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", type).str(key).str("cpu").int1(numel).op('t').op('Q');
    int1(offset);
    op('(');
    for (int v : sizes) int1(v);
    op('t').op('(');
    for (int v : strides) int1(v);
    op('t').op('\x89').global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  std::string stop() { return s + "."; }
};

StorageLoader MapLoader(const std::map<std::string, std::string>& records) {
  return [&records](const std::string& key, torch::ScalarType dtype,
                    int64_t numel) -> absl::StatusOr<torch::Tensor> {
    auto it = records.find("data/" + key);
    if (it == records.end()) return absl::DataLossError("missing data/" + key);
    const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (it->second.size() != nbytes) return absl::DataLossError("size mismatch data/" + key);
    auto t = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    if (nbytes) std::memcpy(t.data_ptr(), it->second.data(), nbytes);
    return t;
  };
}

// Deep equality (bitwise for tensors and floats, so NaN == NaN).
::testing::AssertionResult SameValue(const PickleValue& a, const PickleValue& b,
                                     const std::string& path = "root") {
  if (a.kind() != b.kind() || a.is_ordered_dict() != b.is_ordered_dict()) {
    return ::testing::AssertionFailure()
           << path << ": kind " << a.kind_name() << " vs " << b.kind_name();
  }
  switch (a.kind()) {
    case PickleValue::Kind::kNone:
      return ::testing::AssertionSuccess();
    case PickleValue::Kind::kBool:
      if (a.as_bool() != b.as_bool()) return ::testing::AssertionFailure() << path << ": bool";
      return ::testing::AssertionSuccess();
    case PickleValue::Kind::kInt:
      if (a.as_int() != b.as_int()) {
        return ::testing::AssertionFailure() << path << ": " << a.as_int() << " vs " << b.as_int();
      }
      return ::testing::AssertionSuccess();
    case PickleValue::Kind::kFloat: {
      double x = a.as_float(), y = b.as_float();
      if (std::memcmp(&x, &y, sizeof(x)) != 0) {
        return ::testing::AssertionFailure() << path << ": " << x << " vs " << y;
      }
      return ::testing::AssertionSuccess();
    }
    case PickleValue::Kind::kString:
    case PickleValue::Kind::kBytes:
      if (a.as_string() != b.as_string()) {
        return ::testing::AssertionFailure()
               << path << ": " << a.DebugString() << " vs " << b.DebugString();
      }
      return ::testing::AssertionSuccess();
    case PickleValue::Kind::kList:
    case PickleValue::Kind::kTuple: {
      if (a.items().size() != b.items().size()) {
        return ::testing::AssertionFailure()
               << path << ": length " << a.items().size() << " vs " << b.items().size();
      }
      for (size_t i = 0; i < a.items().size(); ++i) {
        auto r = SameValue(a.items()[i], b.items()[i], absl::StrCat(path, "[", i, "]"));
        if (!r) return r;
      }
      return ::testing::AssertionSuccess();
    }
    case PickleValue::Kind::kDict: {
      if (a.dict_items().size() != b.dict_items().size()) {
        return ::testing::AssertionFailure() << path << ": dict size";
      }
      for (size_t i = 0; i < a.dict_items().size(); ++i) {
        const std::string p = absl::StrCat(path, "{", a.dict_items()[i].first.DebugString(), "}");
        auto r = SameValue(a.dict_items()[i].first, b.dict_items()[i].first, p + ".key");
        if (!r) return r;
        r = SameValue(a.dict_items()[i].second, b.dict_items()[i].second, p);
        if (!r) return r;
      }
      return ::testing::AssertionSuccess();
    }
    case PickleValue::Kind::kTensor: {
      const torch::Tensor& x = a.as_tensor();
      const torch::Tensor& y = b.as_tensor();
      if (x.scalar_type() != y.scalar_type() || x.sizes() != y.sizes()) {
        return ::testing::AssertionFailure()
               << path << ": tensor meta " << a.DebugString() << " vs " << b.DebugString();
      }
      auto xc = x.contiguous(), yc = y.contiguous();
      if (std::memcmp(xc.data_ptr(), yc.data_ptr(), xc.numel() * xc.element_size()) != 0) {
        return ::testing::AssertionFailure() << path << ": tensor data differs";
      }
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "unknown kind";
}

// ---- official checkpoints -------------------------------------------------------------------

struct ExpectedTensor {
  const char* key;
  std::vector<int64_t> shape;
  double sum;
  double first;
};

// nino_no_posw.pt
const ExpectedTensor kNoPosw[] = {
    {"layer_embed.weight", {15, 128}, 6.53740879, 0.0263169501},
    {"node_proj.fc.0.weight", {128, 8}, 0.52766681, -0.00681124115},
    {"node_proj.fc.0.bias", {128}, -0.00382455746, -0.000640161976},
    {"edge_proj.fc.0.weight", {128, 45}, 2.32442956, 0.210055634},
    {"edge_proj.fc.0.bias", {128}, 0.529037159, 0.0195419639},
    {"edge_out.fc.0.weight", {128, 128}, -6.2187182, -0.0182626266},
    {"edge_out.fc.0.bias", {128}, -0.335087472, 0.00112013135},
    {"edge_out.fc.2.weight", {360, 128}, -59.3113461, 0.00569878053},
    {"edge_out.fc.2.bias", {360}, -1.87524272, -0.00055346766},
    {"gnn.convs.0.edge_encoder.weight", {256, 128}, 8.91088097, -0.0626627803},
    {"gnn.convs.0.edge_encoder.bias", {256}, 0.396687227, -0.0231373813},
    {"gnn.convs.0.pre_nns.0.0.weight", {128, 256}, -28.5951066, 0.058752887},
    {"gnn.convs.0.pre_nns.0.0.bias", {128}, 0.0100234665, 0.0145032536},
    {"gnn.convs.0.post_nns.0.0.weight", {128, 256}, 4.11099836, 0.0418594219},
    {"gnn.convs.0.post_nns.0.0.bias", {128}, 0.0336960735, 0.00127230911},
    {"gnn.convs.0.lin.weight", {128, 128}, 4.22288557, -0.000724515761},
    {"gnn.convs.0.lin.bias", {128}, -0.3222677, -0.00270371884},
    {"gnn.convs.1.edge_encoder.weight", {256, 128}, 26.7125714, -0.151899278},
    {"gnn.convs.1.edge_encoder.bias", {256}, 0.0752230554, -0.0209536478},
    {"gnn.convs.1.pre_nns.0.0.weight", {128, 256}, -2.66283755, -0.312957942},
    {"gnn.convs.1.pre_nns.0.0.bias", {128}, 1.02637423, 0.0180005059},
    {"gnn.convs.1.post_nns.0.0.weight", {128, 256}, -1.94401789, 0.0298610982},
    {"gnn.convs.1.post_nns.0.0.bias", {128}, -0.0104807048, -0.0433550999},
    {"gnn.convs.1.lin.weight", {128, 128}, 5.49702902, 0.1438234},
    {"gnn.convs.1.lin.bias", {128}, -0.216130583, -0.00454787957},
    {"gnn.convs.2.edge_encoder.weight", {256, 128}, 1.04407335, -0.00512667745},
    {"gnn.convs.2.edge_encoder.bias", {256}, 0, 0},
    {"gnn.convs.2.pre_nns.0.0.weight", {128, 256}, -2.31634732, -0.0143197607},
    {"gnn.convs.2.pre_nns.0.0.bias", {128}, 0, 0},
    {"gnn.convs.2.post_nns.0.0.weight", {128, 256}, -1.4632379, -0.00944923889},
    {"gnn.convs.2.post_nns.0.0.bias", {128}, 0, 0},
    {"gnn.convs.2.lin.weight", {128, 128}, -4.60944014, 0.00610995619},
    {"gnn.convs.2.lin.bias", {128}, 0, 0},
    {"gnn.edge_update.0.lin_e.weight", {128, 128}, -8.21385381, 0.116681315},
    {"gnn.edge_update.0.lin_e.bias", {128}, -1.38413178, -0.00571088074},
    {"gnn.edge_update.0.lin_s.weight", {128, 128}, -17.4346383, 0.0268949214},
    {"gnn.edge_update.0.lin_s.bias", {128}, -1.38385572, -0.00568623282},
    {"gnn.edge_update.0.lin_t.weight", {128, 128}, -73.3105196, -0.0135203507},
    {"gnn.edge_update.0.lin_t.bias", {128}, -1.44601974, -0.00378984935},
    {"gnn.edge_update.0.lin1.weight", {128, 128}, 21.2526227, -0.0231074672},
    {"gnn.edge_update.0.lin1.bias", {128}, -0.0763367049, 0.0109321531},
    {"gnn.edge_update.1.lin_e.weight", {128, 128}, -12.5282428, -0.0547372773},
    {"gnn.edge_update.1.lin_e.bias", {128}, -3.37779418, 0.0144603401},
    {"gnn.edge_update.1.lin_s.weight", {128, 128}, -163.932335, -0.014155711},
    {"gnn.edge_update.1.lin_s.bias", {128}, -3.37941108, 0.0144403437},
    {"gnn.edge_update.1.lin_t.weight", {128, 128}, -243.89021, 0.00890691578},
    {"gnn.edge_update.1.lin_t.bias", {128}, -3.40294417, 0.0127402144},
    {"gnn.edge_update.1.lin1.weight", {128, 128}, 2.92846634, 0.0166637246},
    {"gnn.edge_update.1.lin1.bias", {128}, -0.115537985, -0.021862613},
};
// nino_mlp.pt
const ExpectedTensor kMlp[] = {
    {"layer_embed.weight", {15, 128}, 3.06324201, -0.03134498},
    {"edge_proj.fc.0.weight", {128, 5}, -0.543272712, 0.174540982},
    {"edge_proj.fc.0.bias", {128}, 0.220297897, -0.0372214913},
    {"edge_mlp.fc.4.weight", {128, 128}, -28.2534945, 0.0500114672},
    {"edge_mlp.fc.4.bias", {128}, -0.998678573, 0.00445365114},
    {"edge_mlp.fc.6.weight", {40, 128}, 4.77106558, 0.00651973858},
    {"edge_mlp.fc.6.bias", {40}, -0.0535090588, 0.00100729789},
    {"edge_mlp.fc.0.weight", {128, 128}, 13.2049355, 0.129347995},
    {"edge_mlp.fc.0.bias", {128}, -2.83162113, 0.023331441},
    {"edge_mlp.fc.2.weight", {128, 128}, -141.56251, -0.133676365},
    {"edge_mlp.fc.2.bias", {128}, -2.24688055, -0.0260303896},
};
// nino_mlp_h32.pt
const ExpectedTensor kMlpH32[] = {
    {"layer_embed.weight", {15, 32}, -3.16663847, 0.0150774159},
    {"edge_proj.fc.0.weight", {32, 5}, 0.311418343, -0.359820604},
    {"edge_proj.fc.0.bias", {32}, 0.0606093649, -0.152602255},
    {"edge_mlp.fc.4.weight", {32, 32}, -49.7412121, 0.108557291},
    {"edge_mlp.fc.4.bias", {32}, -0.33302961, -0.0329675749},
    {"edge_mlp.fc.6.weight", {40, 32}, 37.8772874, -0.0443362407},
    {"edge_mlp.fc.6.bias", {40}, -0.407367242, -0.00350159896},
    {"edge_mlp.fc.0.weight", {32, 32}, -14.636649, 0.424797684},
    {"edge_mlp.fc.0.bias", {32}, 0.298462746, -0.0193330254},
    {"edge_mlp.fc.2.weight", {32, 32}, -3.71376701, 0.147801608},
    {"edge_mlp.fc.2.bias", {32}, -0.750863204, -0.0306855198},
};

struct CheckpointCase {
  const char* file;
  const ExpectedTensor* tensors;
  size_t count;
  int64_t total_params;
};

class OfficialCheckpointTest : public ::testing::TestWithParam<CheckpointCase> {};

TEST_P(OfficialCheckpointTest, MatchesSpec) {
  const CheckpointCase& c = GetParam();
  const std::string path = CheckpointPath(c.file);
  if (!FileExists(path)) {
    GTEST_SKIP() << "official checkpoint absent: " << path
                 << " (set NINO_SHARED_DIR to the shared folder to run this test)";
  }
  absl::StatusOr<PickleValue> loaded = LoadTorchFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const PickleValue& top = *loaded;
  ASSERT_TRUE(top.is_dict()) << top.DebugString();
  EXPECT_FALSE(top.is_ordered_dict());
  ASSERT_EQ(top.dict_items().size(), 2u) << top.DebugString();
  EXPECT_EQ(top.dict_items()[0].first.as_string(), "state_dict");
  EXPECT_EQ(top.dict_items()[1].first.as_string(), "model_args");
  EXPECT_EQ(top.Find("step"), nullptr);

  const PickleValue* sd = top.Find("state_dict");
  ASSERT_NE(sd, nullptr);
  // The official files hold a plain dict here (CHECKPOINTS.md says OrderedDict; the pickle
  // uses collections.OrderedDict only for the empty backward-hook dicts). Order still matters.
  ASSERT_TRUE(sd->is_dict()) << sd->kind_name();
  EXPECT_FALSE(sd->is_ordered_dict());
  absl::StatusOr<NamedTensors> named = ToNamedTensors(*sd);
  ASSERT_TRUE(named.ok()) << named.status();
  ASSERT_EQ(named->size(), c.count);
  int64_t total = 0;
  for (size_t i = 0; i < c.count; ++i) {
    const ExpectedTensor& e = c.tensors[i];
    const auto& [key, t] = (*named)[i];
    SCOPED_TRACE(key);
    EXPECT_EQ(key, e.key) << "key order differs at index " << i;
    EXPECT_EQ(t.sizes().vec(), e.shape);
    EXPECT_EQ(t.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_FALSE(t.requires_grad());
    const double sum = t.to(torch::kFloat64).sum().item<double>();
    EXPECT_NEAR(sum, e.sum, 1e-7 * std::max(1.0, std::fabs(e.sum)));
    const double first = t.flatten()[0].item<float>();
    EXPECT_NEAR(first, e.first, 1e-9 + 1e-7 * std::fabs(e.first));
    total += t.numel();
  }
  EXPECT_EQ(total, c.total_params);

  const PickleValue* args = top.Find("model_args");
  ASSERT_NE(args, nullptr);
  ASSERT_TRUE(args->is_dict());
  const std::string file = c.file;
  if (file == "nino_no_posw.pt") {
    EXPECT_EQ(args->DebugString(), "{'wte_pos_enc': False}");
  } else if (file == "nino_mlp.pt") {
    EXPECT_EQ(args->DebugString(), "{'gnn': False}");
  } else {
    EXPECT_EQ(args->DebugString(), "{'gnn': False, 'hid': 32}");
    ASSERT_NE(args->Find("hid"), nullptr);
    EXPECT_EQ(args->Find("hid")->as_int(), 32);
  }

  // The in-memory entry point gives the same result, and its tensors do not point into the
  // caller's buffer.
  std::string bytes = ReadFile(path);
  absl::StatusOr<PickleValue> again = LoadTorchBytes(bytes, "in-memory copy");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(SameValue(top, *again));
  const auto& t0 = again->Find("state_dict")->dict_items()[0].second.as_tensor();
  const char* p = static_cast<const char*>(t0.data_ptr());
  EXPECT_FALSE(p >= bytes.data() && p < bytes.data() + bytes.size());
}

INSTANTIATE_TEST_SUITE_P(
    Shared, OfficialCheckpointTest,
    ::testing::Values(CheckpointCase{"nino_no_posw.pt", kNoPosw, std::size(kNoPosw), 549992},
                      CheckpointCase{"nino_mlp.pt", kMlp, std::size(kMlp), 57384},
                      CheckpointCase{"nino_mlp_h32.pt", kMlpH32, std::size(kMlpH32), 5160}),
    [](const ::testing::TestParamInfo<CheckpointCase>& info) {
      const std::string n = info.param.file;
      return n.substr(0, n.find('.'));  // e.g. nino_no_posw
    });

// ---- round trips ----------------------------------------------------------------------------

PickleValue S(const std::string& s) { return PickleValue::String(s); }
PickleValue I(int64_t v) { return PickleValue::Int(v); }
PickleValue T(torch::Tensor t) { return PickleValue::FromTensor(std::move(t)); }

PickleValue AllKindsValue(bool with_long_list = true) {
  using PV = PickleValue;
  torch::manual_seed(7);
  std::vector<std::pair<PV, PV>> tensors;
  auto base = torch::randn({3, 4});
  tensors.emplace_back(S("f32"), T(base));
  tensors.emplace_back(S("f64"), T(torch::randn({2, 3}, torch::kFloat64)));
  tensors.emplace_back(S("f16"), T(torch::randn({5}).to(torch::kFloat16)));
  tensors.emplace_back(S("bf16"), T(torch::randn({2, 2}).to(torch::kBFloat16)));
  tensors.emplace_back(S("i8"), T(torch::arange(-5, 5, torch::kInt8)));
  tensors.emplace_back(S("i16"), T(torch::arange(-300, 300, 7, torch::kInt16)));
  tensors.emplace_back(S("i32"), T(torch::arange(-70000, 70000, 999, torch::kInt32)));
  tensors.emplace_back(S("i64"),
                       T(torch::tensor({int64_t{1} << 40, -(int64_t{1} << 62), int64_t{3}})));
  tensors.emplace_back(S("u8"), T(torch::arange(0, 256, torch::kUInt8)));
  tensors.emplace_back(S("bool"), T(torch::tensor({true, false, true})));
  tensors.emplace_back(S("scalar"), T(torch::tensor(3.5)));
  tensors.emplace_back(S("empty"), T(torch::empty({0, 3})));
  tensors.emplace_back(S("transposed"), T(base.t()));             // non-contiguous input
  tensors.emplace_back(S("strided"), T(base.slice(1, 0, 4, 2)));  // non-contiguous input
  tensors.emplace_back(S("same_again"), T(base));                 // the same tensor twice

  std::vector<std::pair<PV, PV>> nested;
  nested.emplace_back(S("one"), PV::Dict({{S("only"), I(1)}}));  // 1-entry dict (SETITEM)
  nested.emplace_back(S("list1"), PV::List({I(42)}));            // 1-entry list (APPEND)
  nested.emplace_back(S("list0"), PV::List({}));
  nested.emplace_back(S("dict0"), PV::Dict({}));
  nested.emplace_back(S("tuples"), PV::List({PV::Tuple({}), PV::Tuple({I(1)}),
                                             PV::Tuple({I(1), I(2)}), PV::Tuple({I(1), I(2), I(3)}),
                                             PV::Tuple({I(1), I(2), I(3), I(4), I(5)})}));
  nested.emplace_back(I(7), S("int key"));
  nested.emplace_back(S("deep"),
                      PV::List({PV::Dict({{S("a"), PV::List({PV::Tuple({T(torch::ones({2}))})})}},
                                         /*ordered=*/true)}));
  std::vector<PV> long_list;
  for (int i = 0; i < 2345; ++i) long_list.push_back(I(i * 3));  // several APPENDS batches
  if (with_long_list) nested.emplace_back(S("long_list"), PV::List(long_list));

  std::vector<PV> ints;
  for (int64_t v :
       {int64_t{0}, int64_t{1}, int64_t{255}, int64_t{256}, int64_t{65535}, int64_t{65536},
        int64_t{-1}, int64_t{-128}, int64_t{-129}, int64_t{2147483647}, int64_t{2147483648},
        int64_t{-2147483648LL}, int64_t{-2147483649LL}, int64_t{1} << 40, int64_t{1} << 55,
        (int64_t{1} << 55) - 1, std::numeric_limits<int64_t>::max(),
        std::numeric_limits<int64_t>::min(), -(int64_t{1} << 47)}) {
    ints.push_back(I(v));
  }
  std::vector<PV> floats;
  for (double v :
       {0.0, -0.0, 1.5, -2.25e-300, 1e300, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    floats.push_back(PV::Float(v));
  }
  std::vector<std::pair<PV, PV>> top;
  top.emplace_back(S("state_dict"), PV::Dict(tensors, /*ordered=*/true));
  top.emplace_back(S("nested"), PV::Dict(nested));
  top.emplace_back(S("ints"), PV::List(ints));
  top.emplace_back(S("floats"), PV::Tuple(floats));
  top.emplace_back(S("unicode"), PV::List({S(""), S("plain"), S("Grüße, 東京, 🚀"),
                                           S(std::string("nul\0inside", 10))}));
  top.emplace_back(S("bytes"),
                   PV::List({PV::Bytes(""), PV::Bytes(std::string("\x00\xff\x80 a", 5))}));
  top.emplace_back(S("flags"), PV::List({PV::Bool(true), PV::Bool(false), PV::None()}));
  return PV::Dict(top);
}

TEST(TorchFileRoundTrip, AllKinds) {
  const std::string dir = TmpDir();
  const std::string path = dir + "/all.pt";
  PickleValue v = AllKindsValue();
  ASSERT_TRUE(SaveTorchFile(path, v).ok());
  absl::StatusOr<PickleValue> back = LoadTorchFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  // Non-contiguous inputs come back as contiguous copies with the same values.
  EXPECT_TRUE(SameValue(v, *back));
  const auto* sd = back->Find("state_dict");
  ASSERT_TRUE(sd != nullptr && sd->is_ordered_dict());
  for (const auto& [k, t] : sd->dict_items()) EXPECT_TRUE(t.as_tensor().is_contiguous());
  EXPECT_TRUE(torch::equal(sd->Find("transposed")->as_tensor(), sd->Find("f32")->as_tensor().t()));
  EXPECT_FALSE(back->Find("nested")->is_ordered_dict());
  // The archive is laid out like torch.save: root "archive", data.pkl, byteorder, data/<k>.
  auto records = ReadRecords(path);
  EXPECT_EQ(records.count("data.pkl"), 1u);
  EXPECT_EQ(records["byteorder"], "little");
  EXPECT_EQ(records["version"], "3\n");
  EXPECT_EQ(records.count("data/0"), 1u);
  EXPECT_EQ(records["data.pkl"].substr(0, 2), std::string("\x80\x02", 2));
  // No temporary files are left behind.
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"all.pt"});
}

TEST(TorchFileRoundTrip, StateDictHelpers) {
  NamedTensors in = {{"b.weight", torch::ones({2, 2})}, {"a.bias", torch::zeros({2})}};
  PickleValue v = StateDictValue(in);
  EXPECT_TRUE(v.is_ordered_dict());
  const std::string path = TmpDir() + "/sd.pt";
  ASSERT_TRUE(SaveTorchFile(path, v).ok());
  auto back = LoadTorchFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  auto named = ToNamedTensors(*back);
  ASSERT_TRUE(named.ok()) << named.status();
  ASSERT_EQ(named->size(), 2u);
  EXPECT_EQ((*named)[0].first, "b.weight");  // order preserved, not sorted
  EXPECT_EQ((*named)[1].first, "a.bias");

  auto bad = ToNamedTensors(PickleValue::Dict({{S("x"), I(1)}}));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "'x'")) << bad.status();
  EXPECT_EQ(ToNamedTensors(PickleValue::List({})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ToNamedTensors(PickleValue::Dict({{I(1), T(torch::ones(1))}})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TorchFileRoundTrip, RequiresGradIsKept) {
  const std::string path = TmpDir() + "/grad.pt";
  auto p = torch::ones({2}).set_requires_grad(true);
  ASSERT_TRUE(SaveTorchFile(path, PickleValue::List({T(p), T(torch::ones({2}))})).ok());
  auto back = LoadTorchFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->items()[0].as_tensor().requires_grad());
  EXPECT_FALSE(back->items()[1].as_tensor().requires_grad());
}

TEST(TorchFileSave, OverwritesAtomicallyAndReportsErrors) {
  const std::string dir = TmpDir();
  const std::string path = dir + "/x.pt";
  ASSERT_TRUE(SaveTorchFile(path, PickleValue::List({I(1), I(2)})).ok());
  ASSERT_TRUE(SaveTorchFile(path, PickleValue::List({I(3)})).ok());
  auto back = LoadTorchFile(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->items().size(), 1u);

  // Unsavable values leave the existing file untouched and no temporary behind.
  const std::string before = ReadFile(path);
  absl::Status st = SaveTorchFile(path, S(std::string("\xff\xfe", 2)));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), path)) << st;
  st = SaveTorchFile(path, T(torch::ones({2}, torch::kComplexFloat)));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  st = SaveTorchFile(path, T(torch::Tensor()));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  // A reference cycle is reported, not followed forever.
  PickleValue cyc = PickleValue::List({});
  cyc.mutable_items().push_back(cyc);
  st = SaveTorchFile(path, cyc);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  cyc.mutable_items().clear();  // break the cycle
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"x.pt"});

  st = SaveTorchFile(dir + "/no/such/dir/y.pt", I(1));
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "y.pt")) << st;
}

// ---- corrupt and hostile inputs -------------------------------------------------------------

void ExpectError(const absl::StatusOr<PickleValue>& r, absl::StatusCode code,
                 const std::string& name, const std::string& needle = "") {
  ASSERT_FALSE(r.ok()) << "unexpectedly loaded: " << r->DebugString();
  EXPECT_EQ(r.status().code(), code) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), name)) << r.status();
  if (!needle.empty()) {
    EXPECT_TRUE(absl::StrContains(r.status().message(), needle)) << r.status();
  }
}

TEST(TorchFileCorrupt, MissingEmptyTextDirectory) {
  const std::string dir = TmpDir();
  ExpectError(LoadTorchFile(dir + "/missing.pt"), absl::StatusCode::kNotFound, "missing.pt");
  WriteFile(dir + "/empty.pt", "");
  ExpectError(LoadTorchFile(dir + "/empty.pt"), absl::StatusCode::kDataLoss, "empty.pt", "empty");
  WriteFile(dir + "/text.pt", "hello, this is not a checkpoint\n");
  ExpectError(LoadTorchFile(dir + "/text.pt"), absl::StatusCode::kInvalidArgument, "text.pt",
              "not a torch.save file");
  WriteFile(dir + "/legacy.pt", std::string("\x80\x02\x8a\x0alegacy", 10));
  ExpectError(LoadTorchFile(dir + "/legacy.pt"), absl::StatusCode::kInvalidArgument, "legacy.pt",
              "legacy");
  ExpectError(LoadTorchFile(dir), absl::StatusCode::kInvalidArgument, dir, "directory");
  // A zip without data.pkl.
  WriteFile(dir + "/other.zip", MakeArchive({{"foo.txt", "bar"}}));
  ExpectError(LoadTorchFile(dir + "/other.zip"), absl::StatusCode::kInvalidArgument, "other.zip",
              "data.pkl");
}

TEST(TorchFileCorrupt, TruncatedCheckpoint) {
  const std::string src = CheckpointPath("nino_mlp_h32.pt");
  std::string bytes;
  if (FileExists(src)) {
    bytes = ReadFile(src);
  } else {  // still exercise truncation on a file of our own
    const std::string p = TmpDir() + "/own.pt";
    ASSERT_TRUE(SaveTorchFile(p, AllKindsValue()).ok());
    bytes = ReadFile(p);
  }
  const std::string dir = TmpDir();
  std::vector<size_t> cuts = {1,
                              2,
                              3,
                              4,
                              10,
                              30,
                              64,
                              100,
                              500,
                              1000,
                              bytes.size() / 3,
                              bytes.size() / 2,
                              bytes.size() - 100,
                              bytes.size() - 22,
                              bytes.size() - 1};
  for (size_t cut : cuts) {
    SCOPED_TRACE(cut);
    const std::string path = absl::StrCat(dir, "/cut_", cut, ".pt");
    WriteFile(path, bytes.substr(0, cut));
    auto r = LoadTorchFile(path);
    ASSERT_FALSE(r.ok());
    std::cout << "cut at " << cut << ": " << r.status() << "\n";
    EXPECT_TRUE(absl::StrContains(r.status().message(), path)) << r.status();
    // Cuts inside the 4-byte zip signature are "not a zip"; longer ones are truncated zips.
    EXPECT_EQ(r.status().code(),
              cut < 4 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kDataLoss)
        << r.status();
  }
}

// Offset of the payload of `record` (e.g. "archive/data.pkl") in a stored zip.
size_t PayloadOffset(const std::string& zip, const std::string& record) {
  const size_t name_at = zip.find(record);  // first hit: the local file header
  if (name_at == std::string::npos || name_at < 30) return std::string::npos;
  const auto* h = reinterpret_cast<const unsigned char*>(zip.data() + name_at - 30);
  const size_t name_len = h[26] | (h[27] << 8);
  const size_t extra_len = h[28] | (h[29] << 8);
  return name_at + name_len + extra_len;
}

TEST(TorchFileCorrupt, FlippedBytesAreCaughtByCrc) {
  const std::string dir = TmpDir();
  const std::string path = dir + "/good.pt";
  ASSERT_TRUE(SaveTorchFile(path, AllKindsValue()).ok());
  const std::string bytes = ReadFile(path);
  const size_t pkl_at = PayloadOffset(bytes, "archive/data.pkl");
  ASSERT_NE(pkl_at, std::string::npos);
  ASSERT_EQ(bytes.substr(pkl_at, 2), std::string("\x80\x02", 2));
  const size_t data_at = PayloadOffset(bytes, "archive/data/0");
  ASSERT_NE(data_at, std::string::npos);
  struct Flip {
    size_t at;
    const char* record;
  };
  for (Flip f :
       {Flip{pkl_at, "data.pkl"}, Flip{pkl_at + 1, "data.pkl"}, Flip{pkl_at + 50, "data.pkl"},
        Flip{pkl_at + 300, "data.pkl"}, Flip{data_at, "data/0"}, Flip{data_at + 7, "data/0"}}) {
    SCOPED_TRACE(f.at);
    std::string bad = bytes;
    bad[f.at] ^= 0x5a;
    const std::string p = absl::StrCat(dir, "/flip_", f.at, ".pt");
    WriteFile(p, bad);
    ExpectError(LoadTorchFile(p), absl::StatusCode::kDataLoss, p,
                absl::StrCat("record ", f.record, " fails its CRC-32 check"));
  }
}

// The CRC check catches flipped bytes before the unpickler sees them, so feed corrupted
// pickles to the unpickler directly: every single-byte change and every truncation of a real
// data.pkl must give OK or an error, never a crash.
TEST(TorchFileCorrupt, UnpicklerSurvivesEveryMutation) {
  const std::string path = TmpDir() + "/m.pt";
  ASSERT_TRUE(SaveTorchFile(path, AllKindsValue(/*with_long_list=*/false)).ok());
  const auto records = ReadRecords(path);
  const std::string pkl = records.at("data.pkl");
  StorageLoader loader = MapLoader(records);
  ASSERT_TRUE(ReadPickle(pkl, loader).ok());
  int errors = 0;
  for (size_t i = 0; i < pkl.size(); ++i) {
    auto r = ReadPickle(pkl.substr(0, i), loader);
    ASSERT_FALSE(r.ok()) << "truncated at " << i;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << i << ": " << r.status();
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::string bad = pkl;
      bad[i] = static_cast<char>(bad[i] ^ x);
      auto rb = ReadPickle(bad, loader);
      if (!rb.ok()) {
        ++errors;
        EXPECT_NE(rb.status().code(), absl::StatusCode::kInternal) << i << ": " << rb.status();
      }
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(TorchFileCorrupt, StorageRecordTooShortForTensor) {
  const std::string dir = TmpDir();
  // (a) the record is shorter than the persistent id says.
  {
    std::string pkl = Pk().tensor("FloatStorage", "0", 4, 0, {4}, {1}).stop();
    std::string zip = MakeArchive({{"data.pkl", pkl}, {"data/0", std::string(12, '\0')}});
    WriteFile(dir + "/short_record.pt", zip);
    ExpectError(LoadTorchFile(dir + "/short_record.pt"), absl::StatusCode::kDataLoss,
                "short_record.pt", "data/0");
  }
  // (b) the tensor view (offset + extent) does not fit the storage.
  for (auto [offset, size, stride] : {std::tuple<int, int, int>{0, 5, 1}, {2, 3, 1}, {0, 3, 2}}) {
    std::string pkl = Pk().tensor("FloatStorage", "0", 4, offset, {size}, {stride}).stop();
    std::string zip = MakeArchive({{"data.pkl", pkl}, {"data/0", std::string(16, '\0')}});
    auto r = LoadTorchBytes(zip, "view.pt");
    ExpectError(r, absl::StatusCode::kDataLoss, "view.pt", "storage '0'");
  }
  // ... while views that fit are fine (offset, strides, shared storage).
  {
    std::string f;
    for (float v : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}) f.append(reinterpret_cast<char*>(&v), 4);
    Pk pk;
    pk.op(']').op('(');
    pk.tensor("FloatStorage", "0", 6, 1, {2, 2}, {1, 3});
    pk.tensor("FloatStorage", "0", 6, 0, {6}, {1});
    std::string pkl = pk.op('e').stop();
    auto r = LoadTorchBytes(MakeArchive({{"data.pkl", pkl}, {"data/0", f}}), "views.pt");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(torch::equal(r->items()[0].as_tensor(), torch::tensor({{2.f, 5.f}, {3.f, 6.f}})));
    EXPECT_TRUE(r->items()[0].as_tensor().is_contiguous());
    EXPECT_EQ(r->items()[1].as_tensor().numel(), 6);
  }
  // (c) a missing storage record.
  {
    std::string pkl = Pk().tensor("FloatStorage", "7", 1, 0, {1}, {1}).stop();
    auto r = LoadTorchBytes(MakeArchive({{"data.pkl", pkl}}), "nostorage.pt");
    ExpectError(r, absl::StatusCode::kDataLoss, "nostorage.pt", "data/7");
  }
  // (d) the same storage key used with two dtypes.
  {
    Pk pk;
    pk.op('(');
    pk.tensor("FloatStorage", "0", 1, 0, {1}, {1});
    pk.tensor("IntStorage", "0", 1, 0, {1}, {1});
    auto r = LoadTorchBytes(MakeArchive({{"data.pkl", pk.op('t').stop()}, {"data/0", "abcd"}}),
                            "twotypes.pt");
    ExpectError(r, absl::StatusCode::kInvalidArgument, "twotypes.pt", "storage '0'");
  }
}

TEST(TorchFileCorrupt, UnknownGlobalAndOpcodes) {
  auto load = [](const std::string& pkl) {
    return LoadTorchBytes(MakeArchive({{"data.pkl", pkl}}), "evil.pt");
  };
  ExpectError(load(Pk().global("os", "system").str("echo hi").op('\x85').op('R').stop()),
              absl::StatusCode::kInvalidArgument, "evil.pt", "'os.system'");
  ExpectError(load(Pk().global("os", "system").stop()), absl::StatusCode::kInvalidArgument,
              "byte offset 2");
  // STACK_GLOBAL path too.
  ExpectError(load(Pk().str("builtins").str("eval").op('\x93').stop()),
              absl::StatusCode::kInvalidArgument, "evil.pt", "builtins.eval");
  ExpectError(load(Pk().op('\x8f').stop()), absl::StatusCode::kUnimplemented, "evil.pt",
              "EMPTY_SET");
  ExpectError(load(Pk().op('S').raw("'x'\n").stop()), absl::StatusCode::kUnimplemented, "evil.pt",
              "STRING");
  ExpectError(load(Pk().op('\xff').stop()), absl::StatusCode::kDataLoss, "evil.pt",
              "invalid opcode 0xff at byte offset 2");
  ExpectError(load(Pk().op('a').stop()), absl::StatusCode::kDataLoss, "evil.pt", "underflow");
  ExpectError(load(Pk().op('h').u8(3).stop()), absl::StatusCode::kDataLoss, "evil.pt", "memo");
  ExpectError(load(std::string("\x80\x02N", 3)), absl::StatusCode::kDataLoss, "evil.pt", "no STOP");
  // 9-byte LONG1 beyond int64.
  ExpectError(load(Pk().op('\x8a').u8(9).raw(std::string("\0\0\0\0\0\0\0\x80\0", 9)).stop()),
              absl::StatusCode::kInvalidArgument, "evil.pt", "64 bits");
  // Invalid UTF-8 in a string.
  ExpectError(load(Pk().str("\xc3\x28").stop()), absl::StatusCode::kDataLoss, "evil.pt", "UTF-8");
  // Wrong byte order.
  ExpectError(LoadTorchBytes(MakeArchive({{"data.pkl", Pk().op('N').stop()}, {"byteorder", "big"}}),
                             "big.pt"),
              absl::StatusCode::kInvalidArgument, "big.pt", "byteorder");
}

TEST(TorchFileCorrupt, HostileStructures) {
  StorageLoader none;
  // Deep nesting: rejected (limit 200), and tearing it down does not overflow the C++ stack.
  {
    Pk pk;
    const int n = 100000;
    for (int i = 0; i < n; ++i) pk.op(']');
    for (int i = 0; i < n - 1; ++i) pk.op('a');
    auto r = ReadPickle(pk.stop(), none);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  // Deep garbage next to a small result is fine.
  {
    Pk pk;
    const int n = 100000;
    for (int i = 0; i < n; ++i) pk.op(']');
    for (int i = 0; i < n - 1; ++i) pk.op('a');
    auto r = ReadPickle(pk.op('N').stop(), none);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->is_none());
  }
  // A list that contains itself.
  {
    auto r = ReadPickle(Pk().op(']').op('q').u8(0).op('h').u8(0).op('a').stop(), none);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(absl::StrContains(r.status().message(), "cycle")) << r.status();
  }
  // Shared (DAG) structure with exponential expansion is validated in linear time.
  {
    Pk pk;
    pk.op(']').op('q').u8(0);
    for (int i = 0; i < 60; ++i) {
      pk.op(']').op('(').op('h').u8(0).op('h').u8(0).op('e').op('q').u8(0).op('0');
    }
    auto r = ReadPickle(pk.op('h').u8(0).stop(), none);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->items().size(), 2u);
  }
  // Too many MARKs / stack items.
  {
    PickleReaderOptions opt;
    opt.max_stack_size = 1000;
    Pk pk;
    for (int i = 0; i < 2000; ++i) pk.op('N');
    auto r = ReadPickle(pk.stop(), none, opt);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    Pk marks;
    for (int i = 0; i < 100000; ++i) marks.op('(');
    r = ReadPickle(marks.stop(), none);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  // Huge length prefixes are bounds-checked.
  {
    auto r = ReadPickle(Pk().op('X').raw("\xff\xff\xff\x7f").stop(), none);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    r = ReadPickle(Pk().op('\x8d').raw(std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)).stop(),
                   none);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    r = ReadPickle(Pk().op('\x95').raw(std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)).stop(),
                   none);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
  // Bool storage bytes other than 0/1 are normalised.
  {
    std::string pkl = Pk().tensor("BoolStorage", "0", 3, 0, {3}, {1}).stop();
    auto r = LoadTorchBytes(
        MakeArchive({{"data.pkl", pkl}, {"data/0", std::string("\x00\x02\x01", 3)}}), "bool.pt");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(torch::equal(r->as_tensor(), torch::tensor({false, true, true})));
  }
}

TEST(TorchFileCorrupt, ProtocolFourOpcodesAndDuplicates) {
  // SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, FRAME, NEWOBJ, dict with a repeated key.
  std::string p;
  p += std::string("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00", 11);
  auto sstr = [&](const std::string& s) {
    p += '\x8c';
    p += static_cast<char>(s.size());
    p += s;
    p += '\x94';
  };
  sstr("collections");
  sstr("OrderedDict");
  p += "\x93\x94)\x81\x94(";
  sstr("k");
  p += "K\x01";
  sstr("k");
  p += "K\x02";
  sstr("z");
  p += "N";
  p += "u}b.";  // SETITEMS, then BUILD with an empty state
  auto r = ReadPickle(p, StorageLoader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->DebugString(), "OrderedDict{'k': 2, 'z': None}");
}

TEST(PickleValueTest, AccessorsAndDebugString) {
  PickleValue v = PickleValue::Dict({{S("a"), I(1)}, {S("b"), PickleValue::Float(2)}});
  EXPECT_EQ(v.Find("a")->as_int(), 1);
  EXPECT_EQ(v.Find("b")->as_float(), 2.0);
  EXPECT_EQ(v.Find("a")->as_float(), 1.0);  // ints convert
  EXPECT_EQ(v.Find("zz"), nullptr);
  EXPECT_EQ(I(1).Find("a"), nullptr);
  EXPECT_THROW(v.as_int(), std::logic_error);
  EXPECT_THROW(I(1).as_string(), std::logic_error);
  EXPECT_THROW(I(1).items(), std::logic_error);
  EXPECT_THROW(S("x").as_tensor(), std::logic_error);
  try {
    S("x").as_bool();
  } catch (const std::logic_error& e) {
    EXPECT_TRUE(absl::StrContains(e.what(), "str")) << e.what();
  }
  EXPECT_EQ(v.DebugString(), "{'a': 1, 'b': 2.0}");
  EXPECT_EQ(PickleValue::Tuple({I(1)}).DebugString(), "(1,)");
  EXPECT_EQ(T(torch::zeros({2, 3})).DebugString(), "Tensor(Float, [2, 3])");
  EXPECT_EQ(PickleValue::Bytes("a\x01").DebugString(), "b'a\\x01'");
  EXPECT_EQ(PickleValue::None().DebugString(), "None");
  EXPECT_EQ(PickleValue::Float(0.1).DebugString(), "0.1");
  EXPECT_EQ(PickleValue::Float(1e300).DebugString(), "1e+300");
  EXPECT_EQ(PickleValue::Float(-0.0).DebugString(), "-0.0");
}

}  // namespace
}  // namespace nino::io
