#include "common/runtime/threads.h"

#include <algorithm>
#include <thread>

namespace nino::runtime {

int ThreadsOrAllCores(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace nino::runtime
