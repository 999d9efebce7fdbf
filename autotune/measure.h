// Compiling one candidate schedule of an op with libHalide's JIT and timing it on real buffers.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "Halide.h"
#include "workload.h"

namespace smoe::autotune {

// A knob setting of the project's schedule, or one of Halide's autoschedulers in its place.
struct Candidate {
    std::map<std::string, int> knobs;
    std::string autoscheduler;  // "", "Adams2019", "Mullapudi2016", "Li2018"
    std::string label() const;
};

struct Measurement {
    bool ok = false;
    double milliseconds = 0;  // median of the timed runs
    std::string error;        // why it failed: compile error, run error, or wrong results
};

class OpBench {
public:
    // `plugin_dir` holds libautoschedule_*.so; `threads` is the parallelism the autoschedulers plan for.
    OpBench(const std::string &op, OpWorkload workload, const Halide::Target &target, std::string plugin_dir,
            int threads, int adams2019_beam);

    // Compiles and times the candidate. The first candidate that runs gives the reference results;
    // every later one must reproduce them (up to float reassociation) or it fails.
    Measurement measure(const Candidate &candidate);

private:
    Halide::Callable compile(const Candidate &candidate, std::vector<const void *> &argv, std::vector<double> &scalars);
    bool matches_reference(std::string &why) const;

    std::string op_;
    OpWorkload work_;
    Halide::Target target_;
    std::string plugin_dir_;
    int threads_;
    int adams2019_beam_;
    std::vector<std::string> output_names_;
    std::map<std::string, Halide::Buffer<>> reference_;
};

}  // namespace smoe::autotune
