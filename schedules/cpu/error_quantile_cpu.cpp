// CPU schedule of the error quantile: one task per sample, which streams its values once per
// radix pass; histograms and scans (a few KiB) stay in L1.
#include "error_quantile_schedule.h"

namespace smoe {

using namespace Halide;

namespace {

// An associative reduction to one value per sample, run as vector lanes of partial results
// (rfactor), then one reduction of the lanes.
void vectorize_reduction(Func f, Func at, const Var &sample, int lanes) {
    const RVar all = f.rvars(0)[0];
    RVar block(f.name() + "_block"), in_block(f.name() + "_lane");
    Var lane(f.name() + "_l");
    f.update().split(all, block, in_block, lanes, TailStrategy::GuardWithIf);
    Func partial = f.update().rfactor(in_block, lane);
    partial.compute_at(at, sample).vectorize(lane);
    partial.update().reorder(lane, block).vectorize(lane);
}

}  // namespace

void schedule_error_quantile_cpu(ErrorQuantileStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(Int(32));
    const int copies = knobs["histogram_copies"];
    Func out = s.output;
    out.parallel(s.b);
    for (size_t pass = 0; pass < s.histograms.size(); ++pass) {
        s.histograms[pass].compute_at(out, s.b).bound(s.d, 0, s.bins[pass]).vectorize(s.d, lanes);
        // Consecutive values tend to share a bin; counting into interleaved partial histograms
        // breaks the chain of dependent increments.
        const std::string name = "pass" + std::to_string(pass);
        const RVar all = s.histograms[pass].rvars(0)[0];
        RVar block(name + "_block"), part(name + "_part");
        Var copy(name + "_copy");
        s.histograms[pass].update().split(all, block, part, copies, TailStrategy::GuardWithIf);
        Func partial = s.histograms[pass].update().rfactor(part, copy);
        partial.compute_at(out, s.b).bound(copy, 0, copies).vectorize(s.d, lanes);
        partial.update().reorder(copy, block).unroll(copy);
        s.histograms[pass].update().vectorize(s.d, lanes);
        s.cumulative[pass].compute_at(out, s.b);
        s.cumulative[pass].update().unscheduled();
        s.buckets[pass].compute_at(out, s.b);
        vectorize_reduction(s.buckets[pass], out, s.b, lanes);
    }
    // The last pass's reductions: a count, a minimum and a NaN count over the values.
    for (Func f : s.final_pass) {
        f.compute_at(out, s.b);
        vectorize_reduction(f, out, s.b, lanes);
    }
}

}  // namespace smoe
