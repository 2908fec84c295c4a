// Repeated list flags accumulate.
//
// Abseil parses each occurrence of a flag on its own, so `--nino_model=a --nino_model=b` leaves
// a std::vector<std::string> flag holding only "b": the first value is dropped silently. Users
// (and Kubernetes or Slurm argument lists) expect a list flag given twice to hold both values,
// as `--nino_model=a,b` does.
//
// Contract: call AccumulateListFlags(argc, argv, {"nino_model", ...}) right after
// absl::ParseCommandLine, on the original argc / argv. For each named flag given more than once
// on the command line (forms --name=value, -name=value, --name value, -name value; scanning stops
// at a bare "--"), the flag is set to the values of all occurrences joined by ',' in command-line
// order. A flag given at most once is left as parsed. Occurrences read from a --flagfile are not
// seen (there the last one still wins). Returns INVALID_ARGUMENT for an unknown flag name and
// the flag's own parse error for a value it refuses; nothing is changed for that flag then.
#ifndef NINO_COMMON_RUNTIME_LIST_FLAGS_H_
#define NINO_COMMON_RUNTIME_LIST_FLAGS_H_

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nino::runtime {

// The values of every occurrence of --name on the command line, in order (argv[0] skipped).
std::vector<std::string> FlagOccurrences(int argc, const char* const* argv, absl::string_view name);

// See the file comment.
absl::Status AccumulateListFlags(int argc, const char* const* argv,
                                 std::initializer_list<absl::string_view> names);

}  // namespace nino::runtime

#endif  // NINO_COMMON_RUNTIME_LIST_FLAGS_H_
