// CPU schedule of the error quantile: one task per sample, which streams its values once per
// radix pass; histograms and group scans (a few KiB) stay in L1.
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
        Func histogram = s.histograms[pass];
        histogram.compute_at(out, s.b).bound(s.d, 0, s.bins[pass]).vectorize(s.d, lanes);
        if (pass == 0) {
            // Every key counts in the first pass, and consecutive ones tend to share a bin:
            // counting into interleaved partial histograms breaks the chain of dependent increments.
            const RVar all = histogram.rvars(0)[0];
            RVar block("pass0_block"), part("pass0_part");
            Var copy("pass0_copy");
            histogram.update().split(all, block, part, copies, TailStrategy::GuardWithIf);
            Func partial = histogram.update().rfactor(part, copy);
            partial.compute_at(out, s.b).bound(copy, 0, copies).vectorize(s.d, lanes);
            partial.update().reorder(copy, block).unroll(copy);
            histogram.update().vectorize(s.d, lanes);
        } else {
            // The filtered passes count few keys, in a plain loop.
            histogram.update().unscheduled();
            const size_t first_tested = s.histograms.size() - s.block_hits.size();
            if (pass >= first_tested) {
                // The block tests: one vector of keys, reduced to one flag.
                Func hit = s.block_hits[pass - first_tested];
                hit.compute_at(out, s.b).vectorize(s.d, lanes, TailStrategy::GuardWithIf);
                hit.update().atomic().vectorize(hit.rvars(0)[0]);
            }
        }
        // The two-level bucket search: group totals as vector sums, scans left serial (short).
        s.group_totals[pass].compute_at(out, s.b).vectorize(s.d, lanes, TailStrategy::GuardWithIf);
        s.group_totals[pass].update().atomic().vectorize(s.group_totals[pass].rvars(0)[0]);
        s.group_running[pass].compute_at(out, s.b);
        s.groups[pass].compute_at(out, s.b);
        vectorize_reduction(s.groups[pass], out, s.b, lanes);
        s.in_group_running[pass].compute_at(out, s.b);
        s.buckets[pass].compute_at(out, s.b);
        s.buckets[pass].update().atomic().vectorize(s.buckets[pass].rvars(0)[0]);
    }
    // The last pass's reductions: a count, a minimum and a NaN count over the values.
    for (Func f : s.final_pass) {
        f.compute_at(out, s.b);
        vectorize_reduction(f, out, s.b, lanes);
    }
}

}  // namespace smoe
