#include "common/io/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <caffe2/serialize/versions.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/env/write_file_atomically.h"
#include "common/io/pickle_reader.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"

namespace nino::io {
namespace {

// Same code, message prefixed with the file name (and an optional context).
absl::Status Annotate(const absl::Status& s, const std::string& name, const std::string& ctx = "") {
  return absl::Status(s.code(), absl::StrCat(name, ": ", ctx, s.message()));
}

absl::Status ErrnoStatus(int err, const std::string& msg) {
  std::string full = absl::StrCat(msg, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(full);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(full);
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EFBIG:
      return absl::ResourceExhaustedError(full);
    case EISDIR:
      return absl::InvalidArgumentError(full);
    default:
      return absl::InternalError(full);
  }
}

// ---- read adapters (no exceptions; short reads are reported to the zip reader) ----------------

class FdReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  FdReadAdapter(int fd, size_t size) : fd_(fd), size_(size) {}
  ~FdReadAdapter() override { ::close(fd_); }
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    n = std::min<uint64_t>(n, size_ - pos);
    size_t done = 0;
    while (done < n) {
      ssize_t r =
          ::pread(fd_, static_cast<char*>(buf) + done, n - done, static_cast<off_t>(pos + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }

 private:
  int fd_;
  size_t size_;
};

class StringReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit StringReadAdapter(const std::string& s) : s_(s) {}
  size_t size() const override { return s_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= s_.size()) return 0;
    n = std::min<uint64_t>(n, s_.size() - pos);
    std::memcpy(buf, s_.data() + pos, n);
    return n;
  }

 private:
  const std::string& s_;
};

std::string HexPrefix(const unsigned char* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) absl::StrAppendFormat(&out, "%s%02x", i ? " " : "", p[i]);
  return out;
}

// ---- CRC-32 verification ------------------------------------------------------------------------
// LibTorch builds miniz with MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS, so PyTorchStreamReader never
// checks the CRC-32 stored in the zip: a flipped bit in a tensor would load silently. We read
// the CRCs from the central directory ourselves and check every record we use.

uint32_t Le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint16_t Le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint64_t Le64(const unsigned char* p) {
  return static_cast<uint64_t>(Le32(p)) | (static_cast<uint64_t>(Le32(p + 4)) << 32);
}

struct ZipIndex {
  std::string root;                               // archive root folder (no slash)
  std::unordered_map<std::string, uint32_t> crc;  // full entry name -> CRC-32
  // Where each entry's local header lies, its compression method and stored size (as the
  // central directory says; 0xffffffff where a zip64 extra field holds the real value).
  struct Location {
    uint64_t local_offset = 0;
    uint64_t compressed_size = 0;
    uint64_t uncompressed_size = 0;
    uint16_t method = 0;
    uint16_t flags = 0;  // general purpose bit flags
  };
  std::unordered_map<std::string, Location> location;  // full entry name -> location
  bool root_is_folder = false;                         // the first entry's name has a '/'
};

absl::Status ReadExact(const caffe2::serialize::ReadAdapterInterface& in, uint64_t pos, size_t n,
                       std::string* out) {
  out->resize(n);
  if (n == 0) return absl::OkStatus();
  if (pos > in.size() || n > in.size() - pos || in.read(pos, &(*out)[0], n, "zip index") != n) {
    return absl::DataLossError("zip central directory lies outside the file");
  }
  return absl::OkStatus();
}

absl::StatusOr<ZipIndex> ReadZipIndex(const caffe2::serialize::ReadAdapterInterface& in) {
  const uint64_t size = in.size();
  constexpr size_t kEocd = 22;
  if (size < kEocd) return absl::DataLossError("too short for a zip archive");
  const size_t tail_len = static_cast<size_t>(std::min<uint64_t>(size, kEocd + 0xffff + 20));
  std::string tail;
  NINO_RETURN_IF_ERROR(ReadExact(in, size - tail_len, tail_len, &tail));
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  size_t eocd = std::string::npos;
  // The last end record signature (the one miniz takes), whose comment must end the file.
  for (size_t i = tail_len - kEocd + 1; i-- > 0;) {
    if (Le32(t + i) == 0x06054b50) {
      if (i + kEocd + Le16(t + i + 20) == tail_len) eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos)
    return absl::DataLossError("zip end of central directory not found");
  uint64_t count = Le16(t + eocd + 10);
  uint64_t cd_size = Le32(t + eocd + 12);
  uint64_t cd_offset = Le32(t + eocd + 16);
  // zip64: where a zip64 locator precedes the end record, its values are the ones that count
  // (as for miniz, which PyTorchStreamReader reads with; torch.save always writes one).
  const bool zip64_locator = eocd >= 20 && Le32(t + eocd - 20) == 0x07064b50;
  if (zip64_locator || count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    if (!zip64_locator) {
      return absl::DataLossError("zip64 end of central directory locator not found");
    }
    std::string rec;
    NINO_RETURN_IF_ERROR(ReadExact(in, Le64(t + eocd - 20 + 8), 56, &rec));
    const auto* r = reinterpret_cast<const unsigned char*>(rec.data());
    if (Le32(r) != 0x06064b50)
      return absl::DataLossError("zip64 end of central directory not found");
    count = Le64(r + 32);
    cd_size = Le64(r + 40);
    cd_offset = Le64(r + 48);
  }
  if (cd_size > size || count > cd_size / 46 + 1) {
    return absl::DataLossError("zip central directory size is inconsistent");
  }
  std::string cd;
  NINO_RETURN_IF_ERROR(ReadExact(in, cd_offset, static_cast<size_t>(cd_size), &cd));
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  ZipIndex index;
  std::unordered_set<std::string> lower_names;
  size_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd.size() - pos < 46 || Le32(c + pos) != 0x02014b50) {
      return absl::DataLossError("corrupt zip central directory entry");
    }
    const size_t name_len = Le16(c + pos + 28);
    const size_t extra_len = Le16(c + pos + 30);
    const size_t comment_len = Le16(c + pos + 32);
    if (cd.size() - pos - 46 < name_len + extra_len + comment_len) {
      return absl::DataLossError("corrupt zip central directory entry");
    }
    std::string name(reinterpret_cast<const char*>(c + pos + 46), name_len);
    if (i == 0) {
      index.root = name.substr(0, name.find('/'));
      index.root_is_folder = name.find('/') != std::string::npos;
    }
    // A directory entry (DOS directory attribute, or a name ending in '/'): miniz "extracts"
    // it by writing nothing, so its record would read as uninitialised memory. torch.save
    // writes none.
    if ((Le32(c + pos + 38) & 0x10) != 0 || (!name.empty() && name.back() == '/')) {
      return absl::DataLossError(
          absl::StrCat("zip record '", absl::CHexEscape(name.substr(0, 64)), "' is a directory"));
    }
    // Names are unique (miniz looks them up case-insensitively, and which of two equal names
    // it finds is unspecified): a duplicate is an error rather than an ambiguity.
    if (!lower_names.insert(absl::AsciiStrToLower(name)).second) {
      return absl::DataLossError(
          absl::StrCat("zip record name '", absl::CHexEscape(name.substr(0, 64)), "' repeats"));
    }
    index.crc[name] = Le32(c + pos + 16);
    index.location[name] = {Le32(c + pos + 42), Le32(c + pos + 20), Le32(c + pos + 24),
                            Le16(c + pos + 10), Le16(c + pos + 8)};
    pos += 46 + name_len + extra_len + comment_len;
  }
  return index;
}

absl::Status CheckCrc(const ZipIndex& index, const std::string& record, const void* data,
                      size_t n) {
  auto it = index.crc.find(index.root + "/" + record);
  if (it == index.crc.end()) {
    return absl::DataLossError(absl::StrCat("record ", record, " is not in the zip index"));
  }
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  for (size_t done = 0; done < n;) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n - done, size_t{1} << 30));
    crc = ::crc32(crc, p + done, chunk);
    done += chunk;
  }
  if (static_cast<uint32_t>(crc) != it->second) {
    return absl::DataLossError(absl::StrFormat(
        "record %s fails its CRC-32 check (stored %08x, computed %08x): the file is corrupt",
        record, it->second, static_cast<uint32_t>(crc)));
  }
  return absl::OkStatus();
}

// LibTorch 1.13's PyTorchStreamReader constructor leaks miniz's reader state (the archive's
// central directory, ~1 KB and up) when it throws after opening the zip: an archive with no
// records, whose first record is in no folder, or without a readable version record 1..10.
// These are checked here first, from our own index, so that the constructor does not throw
// for them. DATA_LOSS / INVALID_ARGUMENT naming the problem.
absl::Status CheckStreamReaderPreconditions(const caffe2::serialize::ReadAdapterInterface& in,
                                            const ZipIndex& index) {
  if (index.crc.empty()) return absl::DataLossError("zip archive holds no records");
  if (!index.root_is_folder) {
    return absl::DataLossError(
        absl::StrCat("zip record '", index.root.substr(0, 64), "' is not in an archive folder"));
  }
  auto it = index.location.find(index.root + "/.data/version");
  if (it == index.location.end()) it = index.location.find(index.root + "/version");
  if (it == index.location.end()) return absl::DataLossError("zip archive has no version record");
  const ZipIndex::Location& loc = it->second;
  // Stored, not encrypted (bit 0, 6) nor a patch (bit 5), no zip64 fields: as torch.save
  // writes it, and what miniz reads without an error.
  if (loc.method != 0 || (loc.flags & (1 | 32 | 64)) != 0 || loc.compressed_size > 64 ||
      loc.uncompressed_size != loc.compressed_size || loc.local_offset == 0xffffffffu) {
    return absl::DataLossError(
        "the archive's version record is compressed, encrypted or too large");
  }
  std::string header;
  NINO_RETURN_IF_ERROR(ReadExact(in, loc.local_offset, 30, &header));
  const auto* h = reinterpret_cast<const unsigned char*>(header.data());
  if (Le32(h) != 0x04034b50) return absl::DataLossError("corrupt zip local header (version)");
  std::string version;
  NINO_RETURN_IF_ERROR(ReadExact(in, loc.local_offset + 30 + Le16(h + 26) + Le16(h + 28),
                                 static_cast<size_t>(loc.compressed_size), &version));
  // As std::stoull reads it: leading white space, then decimal digits.
  size_t i = 0;
  while (i < version.size() && std::isspace(static_cast<unsigned char>(version[i]))) ++i;
  uint64_t v = 0;
  size_t digits = 0;
  for (; i < version.size() && std::isdigit(static_cast<unsigned char>(version[i])); ++i) {
    if (++digits > 3) break;
    v = v * 10 + static_cast<uint64_t>(version[i] - '0');
  }
  if (digits == 0 || digits > 3 || v < caffe2::serialize::kMinSupportedFileFormatVersion ||
      v > caffe2::serialize::kMaxSupportedFileFormatVersion) {
    return absl::DataLossError(absl::StrCat("unsupported archive version record '",
                                            absl::CHexEscape(version.substr(0, 16)), "'"));
  }
  return absl::OkStatus();
}

// Everything after the file is opened: format sniffing, the zip container, data.pkl.
absl::StatusOr<PickleValue> LoadArchive(std::shared_ptr<caffe2::serialize::ReadAdapterInterface> in,
                                        const std::string& name) {
  const size_t size = in->size();
  if (size == 0) {
    return absl::DataLossError(
        absl::StrCat(name, ": file is empty (0 bytes); expected a torch.save zip archive"));
  }
  unsigned char head[8] = {};
  const size_t nhead = in->read(0, head, std::min<size_t>(sizeof(head), size), "header");
  if (nhead < 4 || std::memcmp(head, "PK\x03\x04", 4) != 0) {
    if (nhead >= 4 && std::memcmp(head, "PK\x05\x06", 4) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": empty zip archive (no records); expected a torch.save file"));
    }
    if (nhead >= 2 && head[0] == 0x80 && head[1] <= 5) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": a bare pickle, e.g. the legacy torch.save format (_use_new_zipfile_serialization="
          "False, PyTorch < 1.6), which is not supported; re-save it with a current torch.save"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        name,
        ": not a torch.save file (expected a zip archive starting with 'PK\\x03\\x04', "
        "first bytes are ",
        HexPrefix(head, nhead), ", ", size, " bytes in total)"));
  }

  try {
    // Our own index first: it validates what the stream reader's constructor would throw on.
    absl::StatusOr<ZipIndex> zip_index = ReadZipIndex(*in);
    if (!zip_index.ok()) return Annotate(zip_index.status(), name, "corrupt zip archive: ");
    const ZipIndex& index = *zip_index;
    NINO_RETURN_IF_ERROR(
        Annotate(CheckStreamReaderPreconditions(*in, index), name, "corrupt zip archive: "));
    caffe2::serialize::PyTorchStreamReader reader(in);
    if (!reader.hasRecord("data.pkl")) {
      if (reader.hasRecord("constants.pkl") || reader.hasRecord("code/__torch__.py")) {
        return absl::InvalidArgumentError(
            absl::StrCat(name,
                         ": a TorchScript archive (torch.jit.save / torch::save), not a torch.save "
                         "pickle archive"));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": zip archive has no data.pkl record; not a torch.save file"));
    }
    if (reader.hasRecord("byteorder")) {
      auto [ptr, n] = reader.getRecord("byteorder");
      NINO_RETURN_IF_ERROR(Annotate(CheckCrc(index, "byteorder", ptr.get(), n), name));
      std::string order(static_cast<const char*>(ptr.get()), n);
      if (order != "little") {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": byteorder record is '", order.substr(0, 16),
                         "'; only little-endian archives are supported"));
      }
    }
    auto [pkl_ptr, pkl_size] = reader.getRecord("data.pkl");
    std::string_view pkl(static_cast<const char*>(pkl_ptr.get()), pkl_size);
    absl::Status crc_ok = CheckCrc(index, "data.pkl", pkl_ptr.get(), pkl_size);
    if (!crc_ok.ok()) return Annotate(crc_ok, name);

    StorageLoader loader = [&reader, &index](const std::string& key, torch::ScalarType dtype,
                                             int64_t numel) -> absl::StatusOr<torch::Tensor> {
      const std::string record = "data/" + key;
      try {
        if (!reader.hasRecord(record)) {
          return absl::DataLossError(absl::StrCat("storage record ", record, " is missing"));
        }
        auto [dp, nbytes] = reader.getRecord(record);
        const size_t elem = c10::elementSize(dtype);
        if (static_cast<uint64_t>(numel) > std::numeric_limits<uint64_t>::max() / elem ||
            static_cast<uint64_t>(numel) * elem != nbytes) {
          return absl::DataLossError(absl::StrFormat(
              "storage record %s has %d bytes but its persistent id says %d elements of %s "
              "(%d bytes)",
              record, nbytes, numel, c10::toString(dtype),
              static_cast<uint64_t>(numel) * static_cast<uint64_t>(elem)));
        }
        NINO_RETURN_IF_ERROR(CheckCrc(index, record, dp.get(), nbytes));
        auto opts = torch::TensorOptions().dtype(dtype);
        if (numel == 0) return torch::empty({0}, opts);
        auto holder = std::make_shared<at::DataPtr>(std::move(dp));
        return torch::from_blob(
            holder->get(), {numel}, [holder](void*) {}, opts);
      } catch (...) {
        return StatusFromCurrentException(absl::StrCat("reading ", record, " failed"),
                                          absl::StatusCode::kDataLoss);
      }
    };
    absl::StatusOr<PickleValue> v = ReadPickle(pkl, loader);
    if (!v.ok()) return Annotate(v.status(), name, "data.pkl: ");
    return v;
  } catch (...) {
    return StatusFromCurrentException(
        absl::StrCat(name, ": corrupt or truncated torch.save zip archive"),
        absl::StatusCode::kDataLoss);
  }
}

// ---- pickle writer (protocol 2, as Python's pickle.Pickler used by torch.save) ----------------

constexpr int kMaxWriteDepth = 200;
constexpr size_t kMaxWriteNodes = size_t{1} << 27;

class PickleWriter {
 public:
  struct Storage {
    std::string key;
    torch::Tensor data;  // CPU, contiguous
  };

  absl::Status Write(const PickleValue& v) {
    out_.append("\x80\x02", 2);
    NINO_RETURN_IF_ERROR(Save(v, 0));
    out_.push_back('.');
    return absl::OkStatus();
  }
  const std::string& bytes() const { return out_; }
  const std::vector<Storage>& storages() const { return storages_; }

 private:
  void Op(uint8_t op) { out_.push_back(static_cast<char>(op)); }
  template <typename T>
  void LE(T v, size_t n = sizeof(T)) {
    uint64_t u = static_cast<uint64_t>(v);
    for (size_t i = 0; i < n; ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }

  void Memoize() {
    if (next_memo_ < 256) {
      Op('q');
      LE<uint8_t>(static_cast<uint8_t>(next_memo_));
    } else {
      Op('r');
      LE<uint32_t>(next_memo_);
    }
    ++next_memo_;
  }

  void Global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    auto it = global_memo_.find(key);
    if (it != global_memo_.end()) {
      if (it->second < 256) {
        Op('h');
        LE<uint8_t>(static_cast<uint8_t>(it->second));
      } else {
        Op('j');
        LE<uint32_t>(it->second);
      }
      return;
    }
    Op('c');
    out_ += key;
    global_memo_[key] = next_memo_;
    Memoize();
  }

  void Int(int64_t v) {
    if (v >= 0 && v <= 0xff) {
      Op('K');
      LE<uint8_t>(static_cast<uint8_t>(v));
    } else if (v >= 0 && v <= 0xffff) {
      Op('M');
      LE<uint16_t>(static_cast<uint16_t>(v));
    } else if (v >= -0x80000000LL && v <= 0x7fffffffLL) {
      Op('J');
      LE<uint32_t>(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      // Python's encode_long: minimal little-endian two's complement.
      std::string b;
      uint64_t u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) b.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
      const bool neg = v < 0;
      while (b.size() > 1) {
        const uint8_t last = static_cast<uint8_t>(b.back());
        const uint8_t prev = static_cast<uint8_t>(b[b.size() - 2]);
        if ((!neg && last == 0x00 && !(prev & 0x80)) || (neg && last == 0xff && (prev & 0x80))) {
          b.pop_back();
        } else {
          break;
        }
      }
      Op(0x8a);
      LE<uint8_t>(static_cast<uint8_t>(b.size()));
      out_ += b;
    }
  }

  void Unicode(const std::string& s) {
    Op('X');
    LE<uint32_t>(static_cast<uint32_t>(s.size()));
    out_ += s;
  }

  absl::Status String(const std::string& s) {
    if (!IsValidUtf8(s)) {
      return absl::InvalidArgumentError("string value is not valid UTF-8: cannot pickle it as str");
    }
    if (s.size() > 0xffffffffu) return absl::InvalidArgumentError("string longer than 4 GiB");
    Unicode(s);
    return absl::OkStatus();
  }

  absl::Status Bytes(const std::string& s) {
    if (s.empty()) {  // Python protocol 2: bytes() -> __builtin__.bytes()
      Global("__builtin__", "bytes");
      Op(')');
      Op('R');
      return absl::OkStatus();
    }
    // Python protocol 2: _codecs.encode(str(b, 'latin1'), 'latin1')
    std::string latin;
    for (unsigned char c : s) {
      if (c < 0x80) {
        latin.push_back(static_cast<char>(c));
      } else {
        latin.push_back(static_cast<char>(0xC0 | (c >> 6)));
        latin.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    if (latin.size() > 0xffffffffu) return absl::InvalidArgumentError("bytes longer than 2 GiB");
    Global("_codecs", "encode");
    Unicode(latin);
    Unicode("latin1");
    Op(0x86);  // TUPLE2
    Op('R');
    return absl::OkStatus();
  }

  absl::Status Sequence(const std::vector<PickleValue>& items, int depth) {
    for (const auto& v : items) NINO_RETURN_IF_ERROR(Save(v, depth + 1));
    return absl::OkStatus();
  }

  absl::Status Tuple(const std::vector<PickleValue>& items, int depth) {
    const size_t n = items.size();
    if (n == 0) {
      Op(')');
      return absl::OkStatus();
    }
    if (n <= 3) {
      NINO_RETURN_IF_ERROR(Sequence(items, depth));
      Op(static_cast<uint8_t>(0x85 + n - 1));  // TUPLE1..3
      return absl::OkStatus();
    }
    Op('(');
    NINO_RETURN_IF_ERROR(Sequence(items, depth));
    Op('t');
    return absl::OkStatus();
  }

  // Python's _batch_appends / _batch_setitems with batches of 1000.
  absl::Status ListItems(const std::vector<PickleValue>& items, int depth) {
    constexpr size_t kBatch = 1000;
    for (size_t start = 0; start < items.size(); start += kBatch) {
      const size_t end = std::min(items.size(), start + kBatch);
      if (end - start == 1) {
        NINO_RETURN_IF_ERROR(Save(items[start], depth + 1));
        Op('a');
      } else {
        Op('(');
        for (size_t i = start; i < end; ++i) NINO_RETURN_IF_ERROR(Save(items[i], depth + 1));
        Op('e');
      }
    }
    return absl::OkStatus();
  }

  absl::Status DictItems(const std::vector<std::pair<PickleValue, PickleValue>>& items, int depth) {
    constexpr size_t kBatch = 1000;
    for (size_t start = 0; start < items.size(); start += kBatch) {
      const size_t end = std::min(items.size(), start + kBatch);
      const bool single = end - start == 1;
      if (!single) Op('(');
      for (size_t i = start; i < end; ++i) {
        const PickleValue& k = items[i].first;
        if (k.is_list() || k.is_dict()) {
          return absl::InvalidArgumentError(
              absl::StrCat("dict key of type ", k.kind_name(), " is not hashable in Python"));
        }
        NINO_RETURN_IF_ERROR(Save(k, depth + 1));
        NINO_RETURN_IF_ERROR(Save(items[i].second, depth + 1));
      }
      Op(single ? 's' : 'u');
    }
    return absl::OkStatus();
  }

  absl::Status Tensor(const torch::Tensor& t) {
    if (!t.defined()) {
      return absl::InvalidArgumentError("undefined tensor (use None for a missing value)");
    }
    const char* storage_type = DtypeToStorageType(t.scalar_type());
    if (storage_type == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor dtype ", c10::toString(t.scalar_type()),
          " is not supported (float32/64, float16, bfloat16, int8/16/32/64, uint8, bool)"));
    }
    if (t.is_sparse() || t.is_quantized() || t.layout() != torch::kStrided) {
      return absl::InvalidArgumentError("only dense strided tensors can be saved");
    }
    torch::Tensor data;
    std::string key;
    auto it = tensor_storage_.find(t.unsafeGetTensorImpl());
    if (it != tensor_storage_.end()) {
      data = storages_[it->second].data;
      key = storages_[it->second].key;
    } else {
      data = t.detach().to(torch::kCPU).contiguous();
      key = std::to_string(storages_.size());
      tensor_storage_[t.unsafeGetTensorImpl()] = storages_.size();
      storages_.push_back({key, data});
    }
    Global("torch._utils", "_rebuild_tensor_v2");
    Op('(');
    // Persistent id ('storage', torch.<T>Storage, key, 'cpu', numel).
    Op('(');
    Unicode("storage");
    Global("torch", storage_type);
    Unicode(key);
    Unicode("cpu");
    Int(data.numel());
    Op('t');
    Op('Q');  // BINPERSID
    Int(0);   // storage offset
    std::vector<PickleValue> sizes, strides;
    for (int64_t s : data.sizes()) sizes.push_back(PickleValue::Int(s));
    for (int64_t s : data.strides()) strides.push_back(PickleValue::Int(s));
    NINO_RETURN_IF_ERROR(Tuple(sizes, 0));
    NINO_RETURN_IF_ERROR(Tuple(strides, 0));
    Op(t.requires_grad() ? 0x88 : 0x89);
    Global("collections", "OrderedDict");  // backward hooks: OrderedDict()
    Op(')');
    Op('R');
    Op('t');
    Op('R');
    return absl::OkStatus();
  }

  absl::Status Save(const PickleValue& v, int depth) {
    if (depth > kMaxWriteDepth) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "value nested deeper than %d levels (or a reference cycle)", kMaxWriteDepth));
    }
    if (++nodes_ > kMaxWriteNodes) {
      return absl::InvalidArgumentError("value has too many nodes (shared sub-containers?)");
    }
    switch (v.kind()) {
      case PickleValue::Kind::kNone:
        Op('N');
        return absl::OkStatus();
      case PickleValue::Kind::kBool:
        Op(v.as_bool() ? 0x88 : 0x89);
        return absl::OkStatus();
      case PickleValue::Kind::kInt:
        Int(v.as_int());
        return absl::OkStatus();
      case PickleValue::Kind::kFloat: {
        Op('G');
        uint64_t u;
        const double d = v.as_float();
        std::memcpy(&u, &d, sizeof(u));
        for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
        return absl::OkStatus();
      }
      case PickleValue::Kind::kString:
        return String(v.as_string());
      case PickleValue::Kind::kBytes:
        return Bytes(v.as_string());
      case PickleValue::Kind::kTuple:
        return Tuple(v.items(), depth);
      case PickleValue::Kind::kList:
        Op(']');
        return ListItems(v.items(), depth);
      case PickleValue::Kind::kDict:
        if (v.is_ordered_dict()) {
          Global("collections", "OrderedDict");
          Op(')');
          Op('R');
        } else {
          Op('}');
        }
        return DictItems(v.dict_items(), depth);
      case PickleValue::Kind::kTensor:
        return Tensor(v.as_tensor());
    }
    return absl::InternalError("unknown PickleValue kind");
  }

  std::string out_;
  std::vector<Storage> storages_;
  std::unordered_map<std::string, uint32_t> global_memo_;
  std::unordered_map<const c10::TensorImpl*, size_t> tensor_storage_;
  uint32_t next_memo_ = 0;
  size_t nodes_ = 0;
};

// Streams the zip into `file`. The zip writer never sees an I/O failure (its sink always
// reports success, so it cannot throw from its destructor); the first error is returned after.
absl::Status WriteZip(const PickleWriter& pw, WritableFile& file) {
  absl::Status io_status;
  auto sink = [&file, &io_status](const void* buf, size_t n) -> size_t {
    if (io_status.ok())
      io_status = file.Append(absl::string_view(static_cast<const char*>(buf), n));
    return n;
  };
  try {
    caffe2::serialize::PyTorchStreamWriter writer(sink);  // archive root "archive"
    static const char kEmpty = 0;
    const std::string& pkl = pw.bytes();
    writer.writeRecord("data.pkl", pkl.data(), pkl.size());
    writer.writeRecord("byteorder", "little", 6);
    for (const auto& s : pw.storages()) {
      const size_t nbytes = s.data.numel() * s.data.element_size();
      writer.writeRecord("data/" + s.key, nbytes ? s.data.data_ptr() : &kEmpty, nbytes);
    }
    writer.writeEndOfFile();  // writes the "version" record and the central directory
  } catch (...) {
    return StatusFromCurrentException("zip writer", absl::StatusCode::kInternal);
  }
  return io_status;
}

}  // namespace

absl::StatusOr<PickleValue> LoadTorchBytes(const std::string& bytes, const std::string& name) {
  return LoadArchive(std::make_shared<StringReadAdapter>(bytes), name);
}

absl::StatusOr<PickleValue> LoadTorchFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return ErrnoStatus(err, absl::StrCat(path, ": cannot open"));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat(path, ": cannot stat"));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is a directory, not a torch.save file"));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  // The adapter owns (and closes) fd.
  return LoadArchive(std::make_shared<FdReadAdapter>(fd, static_cast<size_t>(st.st_size)), path);
}

absl::Status SaveTorchFile(const std::string& path, const PickleValue& value) {
  return SaveTorchFile(Env::Default(), path, value);
}

absl::Status SaveTorchFile(Env* env, const std::string& path, const PickleValue& value) {
  PickleWriter pw;
  try {
    absl::Status st = pw.Write(value);
    if (!st.ok()) return Annotate(st, path, "cannot save: ");
  } catch (...) {
    return StatusFromCurrentException(absl::StrCat(path, ": cannot save"),
                                      absl::StatusCode::kInvalidArgument);
  }
  absl::Status st =
      WriteFileAtomically(env, path, [&pw](WritableFile& file) { return WriteZip(pw, file); });
  return st.ok() ? st : Annotate(st, path, "cannot save: ");
}

PickleValue StateDictValue(const NamedTensors& tensors) {
  std::vector<std::pair<PickleValue, PickleValue>> items;
  items.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    items.emplace_back(PickleValue::String(name), PickleValue::FromTensor(t));
  }
  return PickleValue::Dict(std::move(items), /*ordered=*/true);
}

absl::StatusOr<NamedTensors> ToNamedTensors(const PickleValue& dict) {
  if (!dict.is_dict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a dict of str -> Tensor, got a ", dict.kind_name()));
  }
  NamedTensors out;
  out.reserve(dict.dict_items().size());
  for (const auto& [k, v] : dict.dict_items()) {
    if (!k.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("state dict key ", k.DebugString(1), " is a ",
                                                     k.kind_name(), ", not a str"));
    }
    if (!v.is_tensor()) {
      return absl::InvalidArgumentError(absl::StrCat("state dict entry '", k.as_string(), "' is a ",
                                                     v.kind_name(), ", not a Tensor"));
    }
    out.emplace_back(k.as_string(), v.as_tensor());
  }
  return out;
}

}  // namespace nino::io
