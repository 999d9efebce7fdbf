// Gate gradient, straight-through mode (DESIGN.md §4 "Backward, gate side"): at each selected
// expert e = idx(j,h,w), grad_routing[.., e, h, w] = Σ_f dy[.., j·F+f, h, w] (unweighted) or
// Σ_f dy·u (weighted, u the expert's ungated response); 0 at unselected experts; undamped. With
// shared routing the batch is summed as well.
#include "Halide.h"

#include "gate_gradient_schedule.h"
#include "precision.h"

namespace smoe {
namespace {

using namespace Halide;

class GateGradient : public Generator<GateGradient> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> shared_routing{"shared_routing", true};
    GeneratorParam<bool> weighted{"weighted", false};

    GeneratorInput<Buffer<>> *grad_y = nullptr;          // (w, h, j·F + f, b)
    GeneratorInput<Buffer<>> *response = nullptr;        // u, like grad_y; only when weighted
    GeneratorInput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j) or (w, h, j, b)
    GeneratorInput<int32_t> *out_per_expert = nullptr;   // F
    GeneratorOutput<Buffer<>> *grad_routing = nullptr;   // (w, h, e) or (w, h, e, b)

    void configure() {
        const int routing_dims = shared_routing ? 3 : 4;
        grad_y = add_input<Buffer<>>("grad_y", dtype, 4);
        if (weighted) response = add_input<Buffer<>>("response", dtype, 4);
        indices = add_input<Buffer<int32_t>>("indices", routing_dims);
        out_per_expert = add_input<int32_t>("F");
        grad_routing = add_output<Buffer<>>("grad_routing", dtype, routing_dims);
    }

    void generate() {
        Var w("w"), h("h"), j("j"), e("e"), b("b");
        Expr F = *out_per_expert;
        Expr batch = grad_y->dim(3).extent();
        Expr selected = indices->dim(2).extent();
        Expr experts = grad_routing->dim(2).extent();
        const Type t = compute_type_of(dtype);

        auto signal = [&](const Expr &jf, const Expr &sample) {
            Expr dy = widen((*grad_y)(w, h, jf, sample), t);
            return weighted ? dy * widen((*response)(w, h, jf, sample), t) : dy;
        };
        // Per slot: summed over the expert's F channels (and the batch for shared routing).
        Func slot_gradient("slot_gradient");
        if (shared_routing) {
            RDom r(0, F, 0, batch, "r");
            slot_gradient(w, h, j) = cast(t, 0);
            slot_gradient(w, h, j) += signal(j * F + r.x, r.y);
        } else {
            RDom r(0, F, "r");
            slot_gradient(w, h, j, b) = cast(t, 0);
            slot_gradient(w, h, j, b) += signal(j * F + r.x, b);
        }

        // Scattered to the experts (indices are distinct per pixel; += keeps it well defined).
        RDom s(0, selected, "s");
        Func gradient("gradient");
        if (shared_routing) {
            gradient(w, h, e) = cast(t, 0);
            gradient(w, h, clamp((*indices)(w, h, s), 0, experts - 1)) += slot_gradient(w, h, s);
            (*grad_routing)(w, h, e) = narrow(gradient(w, h, e), dtype);
        } else {
            gradient(w, h, e, b) = cast(t, 0);
            gradient(w, h, clamp((*indices)(w, h, s, b), 0, experts - 1), b) += slot_gradient(w, h, s, b);
            (*grad_routing)(w, h, e, b) = narrow(gradient(w, h, e, b), dtype);
        }

        GateGradientStages stages{slot_gradient, gradient, *grad_routing, w, h, j, e, b, s, shared_routing};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_gate_gradient(stages, Knobs("gate_gradient", knobs, knobs_target, get_target()), get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::GateGradient, smoe_gate_gradient)
