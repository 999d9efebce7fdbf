#include "route_topk_schedule.h"

namespace smoe {

void schedule_route_topk(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target) {
    if (target.has_gpu_feature()) {
        schedule_route_topk_gpu(stages, knobs, target);
    } else {
        schedule_route_topk_cpu(stages, knobs, target);
    }
}

}  // namespace smoe
