#include "backward_data_schedule.h"

namespace smoe {

void schedule_backward_data(BackwardDataStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_backward_data_gpu(stages, knobs, target);
    } else {
        schedule_backward_data_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
