// Choice among a kernel's compiled variants by measurement, on by default: the first call of each
// (op, variant, shape) on this CPU times every candidate kernel, keeps the fastest, and records the
// choice in a per-user file; later calls and later processes reuse it, so results stay
// deterministic once a shape is cached.
//
// SMOE_KERNEL_CACHE names the file; unset, it is $XDG_CACHE_HOME/smoe/kernel-choices.tsv (or
// ~/.cache/smoe/kernel-choices.tsv); "off" (or 0, none, empty) turns measurement off, and the
// kernels are then chosen by shape class (runtime/kernel_registry.cpp). Choices are filed under
// the CPU's vendor, family and model, the build's kernel target, a fingerprint of the kernels'
// sources (cmake/SmoeKernelFingerprint.cmake) and the candidates' names, so one home directory can
// serve several machines, and a build for other targets, of other kernels or with other variants
// measures again.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace smoe::runtime {

// The float32 CPU target this build's kernels run on this CPU: the first of CMake's
// SMOE_CPU_TARGETS the CPU supports (as Halide's multi-target wrappers pick), or "none".
const std::string &kernel_cpu_target();

// What every choice this build files begins with: the CPU, the kernel target and "kernels " and
// the kernels' fingerprint.
const std::string &kernel_filing_prefix();

// The cache file, or nullopt when measurement is off.
const std::optional<std::string> &kernel_cache_path();

// The recorded choice for `key` (an index into the candidates named when it was chosen), else the
// fastest of `candidates` measured now with `run` (which runs candidate i once), recorded under
// `key` and the candidates' `names`, so a rebuild with other variants re-measures.
// A file that cannot be written keeps the choices of this process only (with one warning).
int choose_by_measurement(const std::string &key, const std::vector<std::string> &names,
                          const std::function<int(int)> &run);

// Which candidates the measurement times after each one's warm-up call (`warmup_seconds`): all but
// those that took over kHopelessRatio times the fastest warm-up and over kHopelessSeconds. A
// formulation at a shape it does not suit can be several times slower than the others (the channel
// dots at one input channel: 380 against 58 ms for the regular forward), and five more calls of it
// cost seconds; drifts between calls on these machines stay well under 4x, and calls this short
// are cheap to time however slow.
constexpr double kHopelessRatio = 4.0, kHopelessSeconds = 0.01;
std::vector<bool> candidates_worth_timing(const std::vector<double> &warmup_seconds);

}  // namespace smoe::runtime
