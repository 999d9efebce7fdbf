// Opt-in choice among a kernel's compiled variants by measurement: with SMOE_KERNEL_CACHE set to a
// file, the first call of each (op, variant, shape) on this machine times every candidate kernel,
// keeps the fastest, and records the choice in that file; later calls and later processes reuse it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace smoe::runtime {

// The cache file (SMOE_KERNEL_CACHE), or nullopt when measurement is off.
const std::optional<std::string> &kernel_cache_path();

// The recorded choice for `key` (an index into the candidates named when it was chosen), else the
// fastest of `candidates` measured now with `run` (which runs candidate i once), recorded under
// `key`. `names` identify the candidates in the file, so a rebuild with other variants re-measures.
int choose_by_measurement(const std::string &key, const std::vector<std::string> &names,
                          const std::function<int(int)> &run);

}  // namespace smoe::runtime
