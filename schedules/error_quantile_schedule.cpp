#include "error_quantile_schedule.h"

namespace smoe {

void schedule_error_quantile(ErrorQuantileStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_error_quantile_gpu(stages, knobs, target);
    } else {
        schedule_error_quantile_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
