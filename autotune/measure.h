// Compiling one candidate schedule of an op with libHalide's JIT and timing it on real buffers.
#pragma once

#include <map>
#include <memory>
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

// A compiled candidate, ready to be timed again and again (interleaved with others).
struct Compiled {
    Halide::Callable callable;
    std::vector<const void *> argv;
    std::vector<double> scalars;
    Halide::JITUserContext context;
    Halide::JITUserContext *context_ptr = nullptr;
};

class OpBench {
public:
    // `plugin_dir` holds libautoschedule_*.so; `threads` is the parallelism the autoschedulers plan for.
    OpBench(const std::string &op, OpWorkload workload, const Halide::Target &target, std::string plugin_dir,
            int threads, int adams2019_beam);

    // Compiles and times the candidate. The first candidate that runs gives the reference results;
    // every later one must reproduce them (up to float reassociation) or it fails.
    Measurement measure(const Candidate &candidate);

    // Compiles the candidate and checks its results as measure() does; nullptr (and `error`) when
    // it fails. time() runs a compiled candidate `runs` times and returns the median milliseconds.
    std::unique_ptr<Compiled> prepare(const Candidate &candidate, std::string &error);
    double time(Compiled &compiled, int runs);

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
