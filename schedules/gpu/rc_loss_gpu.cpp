// CUDA schedule of the RC loss: one thread per pixel (and sample) for the labels and the
// gradient, looping over the experts; one thread per grid row for the row sums of the loss, one
// for the total.
#include "rc_loss_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_rc_loss_gpu(RCLossStages &s, const Knobs &, const Target &) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var wo("wo"), wi("wi"), ho("ho"), hi("hi"), ro("ro"), ri("ri");
    // Threads over the pixels (and samples); the loops in `order` run inside each thread.
    auto pixel_threads = [&](Stage stage, std::vector<VarOrRVar> order) {
        stage.split(s.w, wo, wi, 32, tail).split(s.h, ho, hi, 4, tail);
        for (const Var &v : {wi, hi, wo, ho}) order.push_back(v);
        if (!s.shared_routing) order.push_back(s.b);
        stage.reorder(order).gpu_threads(wi, hi);
        if (s.shared_routing) {
            stage.gpu_blocks(wo, ho);
        } else {
            stage.gpu_blocks(wo, ho, s.b);
        }
    };
    s.label.compute_root();
    pixel_threads(s.label, {s.e});
    s.wrong_share.compute_at(s.label, wi);
    pixel_threads(s.label.update(), {s.label.rvars(0)[0]});
    s.correct.compute_at(s.slot_count, wi);
    s.slot_count.compute_root();  // read by both stages of the labels
    pixel_threads(s.slot_count, {s.j});
    if (s.shared_routing) pixel_threads(s.slot_count.update(), {s.slot_count.rvars(0)[0], s.j});
    pixel_threads(s.grad_routing, {s.e});
    s.row_sum.compute_root().gpu_tile(s.h, ro, ri, 32, tail);
    s.row_sum.update().gpu_tile(s.h, ro, ri, 32, tail);
    s.total.compute_root().gpu_single_thread();
    s.total.update().gpu_single_thread();
}

}  // namespace smoe
