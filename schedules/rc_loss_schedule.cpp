#include "rc_loss_schedule.h"

namespace smoe {

void schedule_rc_loss(RCLossStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_rc_loss_gpu(stages, knobs, target);
    } else {
        schedule_rc_loss_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
