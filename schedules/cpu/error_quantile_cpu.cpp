// CPU schedule of the error quantile: one task per sample, which streams its values once per
// radix pass; histograms and scans (a few KiB) stay in L1.
#include "error_quantile_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_error_quantile_cpu(ErrorQuantileStages &s, const Target &target) {
    const int lanes = target.natural_vector_size(Int(32));
    Func out = s.output;
    out.parallel(s.b);
    for (size_t pass = 0; pass < s.histograms.size(); ++pass) {
        s.histograms[pass].compute_at(out, s.b).bound(s.d, 0, s.bins[pass]).vectorize(s.d, lanes);
        s.histograms[pass].update().unscheduled();  // serial: a scatter over the values
        s.cumulative[pass].compute_at(out, s.b);
        s.cumulative[pass].update().unscheduled();
        s.buckets[pass].compute_at(out, s.b);
    }
    // The last pass's three reductions share one loop over the values.
    for (Func f : s.final_pass) f.compute_at(out, s.b);
    const RVar last_values = s.final_pass[0].rvars(0)[0];
    for (size_t i = 1; i < s.final_pass.size(); ++i) {
        s.final_pass[i].update().compute_with(s.final_pass[0].update(), last_values);
    }
}

}  // namespace smoe
