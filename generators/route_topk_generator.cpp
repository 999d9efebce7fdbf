// Top-E routing (DESIGN.md §4 "Routing"): per pixel, the E experts with the highest scores,
// best first; equal scores rank the lower expert index first.
//
// Each expert's rank is the number of experts that beat it under a strict total order on
// (score, index), so the ranks of a pixel are always a permutation of 0..NE-1 and the experts with
// rank < E are scattered to their slots. Scores compare through an order-preserving integer key
// of their bits, so NaN ranks above everything (as torch.topk does) and -0 equals +0.
#include "Halide.h"

#include "precision.h"
#include "route_topk_schedule.h"

namespace smoe {
namespace {

using namespace Halide;

class RouteTopK : public Generator<RouteTopK> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};

    // Shared routing [NE,H,W] is passed as a batch of one.
    GeneratorInput<Buffer<>> *routing = nullptr;          // (w, h, e, b)
    GeneratorOutput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j, b)
    GeneratorOutput<Buffer<>> *values = nullptr;          // (w, h, j, b)

    void configure() {
        routing = add_input<Buffer<>>("routing", dtype, 4);
        indices = add_output<Buffer<int32_t>>("indices", 4);
        values = add_output<Buffer<>>("values", dtype, 4);
    }

    void generate() {
        Var w("w"), h("h"), e("e"), j("j"), b("b");
        Expr experts = routing->dim(2).extent();
        Expr selected = indices->dim(2).extent();
        // Half-precision scores widen to float32 exactly, so their order is unchanged.
        const Type t = compute_type_of(dtype);
        const int bits = t.bits();
        const Type key_type = Int(bits);

        // Order-preserving key: flip the magnitude bits of negatives; one NaN, one zero.
        Func key("key");
        Expr score = widen((*routing)(w, h, e, b), t);
        Expr canonical = select(is_nan(score), cast(t, NAN), score == 0, cast(t, 0), score);
        Expr raw = reinterpret(key_type, canonical);
        Expr magnitude_mask = key_type.max();  // all bits but the sign
        key(w, h, e, b) = raw ^ ((raw >> (bits - 1)) & magnitude_mask);

        // rank(e) = #{o : key(o) > key(e), or key(o) == key(e) and o < e}: on equal keys the
        // experts below e beat it and those above do not. Two passes, one per side of e, so that
        // no comparison carries the tie-break term.
        RDom below(0, experts, "below");
        below.where(below < e);
        RDom above(0, experts, "above");
        above.where(above > e);
        Func rank("rank");
        rank(w, h, e, b) = 0;
        rank(w, h, e, b) += select(key(w, h, below, b) >= key(w, h, e, b), 1, 0);
        rank(w, h, e, b) += select(key(w, h, above, b) > key(w, h, e, b), 1, 0);

        // Every expert is stored: those ranked E or worse land in a spare slot E that no output
        // reads, so the scatter needs no test per pixel. The ranks are a permutation of 0..NE-1
        // and E <= NE, so each slot below E receives exactly one expert and needs no initial value.
        RDom scatter(0, experts, "scatter");
        Func slot_expert("slot_expert");
        slot_expert(w, h, j, b) = undef<int32_t>();
        slot_expert(w, h, clamp(rank(w, h, scatter, b), 0, selected), b) = scatter;

        (*indices)(w, h, j, b) = slot_expert(w, h, j, b);
        (*values)(w, h, j, b) = (*routing)(w, h, clamp((*indices)(w, h, j, b), 0, experts - 1), b);

        RouteTopKStages stages{key, rank, slot_expert, *indices, *values, w, h, e, j, b, below, above, scatter};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_route_topk(stages, Knobs("route_topk", knobs, knobs_target, get_target()), get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::RouteTopK, smoe_route_topk)
