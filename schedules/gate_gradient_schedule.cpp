#include "gate_gradient_schedule.h"

namespace smoe {

void schedule_gate_gradient(GateGradientStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_gate_gradient_gpu(stages, knobs, target);
    } else {
        schedule_gate_gradient_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
