#include "forward_schedule.h"

namespace smoe {

void schedule_forward(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_forward_gpu(stages, knobs, target);
    } else {
        schedule_forward_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
