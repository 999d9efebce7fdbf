#include "backward_weight_schedule.h"

namespace smoe {

void schedule_backward_weight(BackwardWeightStages &stages, const Knobs &knobs,
                              const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_backward_weight_gpu(stages, knobs, target);
    } else {
        schedule_backward_weight_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
