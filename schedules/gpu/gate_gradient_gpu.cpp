// CUDA schedule of the gate gradient: one thread per pixel (and sample, per-sample routing).
#include "gate_gradient_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_gate_gradient_gpu(GateGradientStages &s, const Knobs &, const Target &) {
    Var wo("wo"), wi("wi"), ho("ho"), hi("hi");
    Func out = s.output;
    out.gpu_tile(s.w, s.h, wo, ho, wi, hi, 32, 4, TailStrategy::GuardWithIf);
    s.gradient.compute_at(out, wi);
    s.slot_gradient.compute_at(out, wi);
}

}  // namespace smoe
