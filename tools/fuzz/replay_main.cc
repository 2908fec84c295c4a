// main() for the replay tests: feeds every file in the directories named on the command line
// (the committed seed corpus and regression inputs of one fuzz target) through that target's
// LLVMFuzzerTestOneInput, built with the ordinary compiler and no libFuzzer. A crash, an abort
// from a target's oracle or a sanitizer report fails the test; so does a directory that is
// missing or holds no input (a corpus that silently vanished would make the test vacuous),
// except a directory written as "?DIR" (regression inputs: a target may have none yet).
#include <dirent.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR...\n", argv[0]);
    return 2;
  }
  size_t total = 0;
  for (int a = 1; a < argc; ++a) {
    std::string dir = argv[a];
    const bool optional = !dir.empty() && dir[0] == '?';
    if (optional) dir = dir.substr(1);
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr && optional) {
      std::printf("no %s (optional)\n", dir.c_str());
      continue;
    }
    if (d == nullptr) {
      std::fprintf(stderr, "FAIL: cannot open %s\n", dir.c_str());
      return 1;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == ".." || name == "README" || name == "README.md") continue;
      names.push_back(name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    if (names.empty() && !optional) {
      std::fprintf(stderr, "FAIL: %s holds no input\n", dir.c_str());
      return 1;
    }
    for (const std::string& name : names) {
      const std::string path = dir + "/" + name;
      std::ifstream in(path, std::ios::binary);
      std::stringstream buf;
      if (in.is_open()) buf << in.rdbuf();
      if (!in.is_open() || in.bad()) {
        std::fprintf(stderr, "FAIL: cannot read %s\n", path.c_str());
        return 1;
      }
      const std::string bytes = buf.str();
      std::printf("replay %s (%zu bytes)\n", path.c_str(), bytes.size());
      std::fflush(stdout);
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++total;
    }
  }
  if (total == 0) {
    std::fprintf(stderr, "FAIL: no input replayed\n");
    return 1;
  }
  std::printf("replayed %zu inputs: OK\n", total);
  return 0;
}
