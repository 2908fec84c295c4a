#include "common/runtime/list_flags.h"

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace nino::runtime {

std::vector<std::string> FlagOccurrences(int argc, const char* const* argv,
                                         absl::string_view name) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;  // the rest are positional arguments
    if (!absl::ConsumePrefix(&arg, "--")) {
      if (!absl::ConsumePrefix(&arg, "-")) continue;
    }
    if (!absl::ConsumePrefix(&arg, name)) continue;
    if (absl::ConsumePrefix(&arg, "=")) {
      values.emplace_back(arg);
    } else if (arg.empty() && i + 1 < argc) {
      values.emplace_back(argv[++i]);  // "--name value"
    }
  }
  return values;
}

absl::Status AccumulateListFlags(int argc, const char* const* argv,
                                 std::initializer_list<absl::string_view> names) {
  for (absl::string_view name : names) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no flag named --", name));
    }
    std::vector<std::string> values = FlagOccurrences(argc, argv, name);
    if (values.size() < 2) continue;
    std::string error;
    if (!flag->ParseFrom(absl::StrJoin(values, ","), &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace nino::runtime
