// Routing-classification loss (DESIGN.md §4 "Backward, gate side", RC mode), labels, loss and the
// gradient with respect to the routing scores z fused; the labels never exist in memory:
//   correct(b, j, h, w) = |ε[b, j·F+f, h, w]|·s <= Q_b + 1e-5 for every f of slot j
//   wrong(b, h, w)      = E − Σ_j correct
//   label(b, e, h, w)   = correct(b, j, h, w) where e = idx(j, h, w), else wrong / (NE − E)
//   loss = mean over (b, e, h, w) of BCE-with-logits(z, label)
//   grad z = rc_weight · (σ(z) − label) / (B·NE·H·W), summed over the batch for shared routing.
// Shared routing needs only Σ_b label, so the batch is summed into the labels first.
#include "Halide.h"

#include "error_signal.h"
#include "precision.h"
#include "rc_loss_schedule.h"

namespace smoe {
namespace {

using namespace Halide;

class RoutingClassificationLoss : public Generator<RoutingClassificationLoss> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> shared_routing{"shared_routing", true};
    GeneratorParam<bool> weighted{"weighted", false};  // ε = dy·u, else ε = dy

    GeneratorInput<Buffer<>> *grad_y = nullptr;          // (w, h, j·F + f, b)
    GeneratorInput<Buffer<>> *response = nullptr;        // u, like grad_y; only when weighted
    GeneratorInput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j) or (w, h, j, b)
    GeneratorInput<Buffer<>> *routing = nullptr;         // z, (w, h, e) or (w, h, e, b)
    GeneratorInput<Buffer<>> *quantile = nullptr;        // Q_b(ε), (b)
    GeneratorInput<int32_t> *out_per_expert = nullptr;   // F
    GeneratorInput<double> *scale = nullptr;             // s
    GeneratorInput<double> *gradient_scale = nullptr;    // rc_weight (times an AMP loss scale)
    GeneratorOutput<Buffer<>> *grad_routing = nullptr;   // like routing
    GeneratorOutput<Buffer<>> *loss = nullptr;           // () the mean BCE

    void configure() {
        const int routing_dims = shared_routing ? 3 : 4;
        grad_y = add_input<Buffer<>>("grad_y", dtype, 4);
        if (weighted) response = add_input<Buffer<>>("response", dtype, 4);
        indices = add_input<Buffer<int32_t>>("indices", routing_dims);
        routing = add_input<Buffer<>>("routing", dtype, routing_dims);
        quantile = add_input<Buffer<>>("quantile", compute_type_of(dtype), 1);
        out_per_expert = add_input<int32_t>("F");
        scale = add_input<double>("scale");
        gradient_scale = add_input<double>("gradient_scale");
        grad_routing = add_output<Buffer<>>("grad_routing", dtype, routing_dims);
        loss = add_output<Buffer<>>("loss", compute_type_of(dtype), 0);
    }

    void generate() {
        const Type t = compute_type_of(dtype);
        Var w("w"), h("h"), j("j"), e("e"), b("b");
        Expr F = *out_per_expert;
        Expr width = grad_y->dim(0).extent(), height = grad_y->dim(1).extent();
        Expr batch = grad_y->dim(3).extent();
        Expr selected = indices->dim(2).extent();
        Expr experts = routing->dim(2).extent();
        Expr elements = cast<double>(batch) * cast<double>(experts) * cast<double>(height) * cast<double>(width);

        // A slot is correct when all F of its channels are within the sample's quantile.
        RDom rf(0, F, "rf");
        Expr dy = widen((*grad_y)(w, h, j * F + rf, b), t);
        Expr eps = weighted ? dy * widen((*response)(w, h, j * F + rf, b), t) : dy;
        Expr within = abs(eps) * cast(t, *scale) <= (*quantile)(b) + Internal::make_const(t, kCorrectTolerance);
        Func correct("correct");
        correct(w, h, j, b) = 1;
        correct(w, h, j, b) = select(within, correct(w, h, j, b), 0);

        // Labels (summed over the batch for shared routing): the correct count at each selected
        // expert, the wrong count shared out among the unselected ones.
        Func slot_count("slot_count"), wrong_share("wrong_share"), label("label");
        RDom s(0, selected, "s");
        Expr unselected = cast(t, experts - selected);
        if (shared_routing) {
            RDom rb(0, batch, "rb");
            slot_count(w, h, j) = 0;
            slot_count(w, h, j) += correct(w, h, j, rb);
            wrong_share(w, h) = cast(t, selected * batch - sum(slot_count(w, h, s))) / unselected;
            label(w, h, e) = wrong_share(w, h);
            label(w, h, clamp((*indices)(w, h, s), 0, experts - 1)) = cast(t, slot_count(w, h, s));
        } else {
            slot_count(w, h, j, b) = correct(w, h, j, b);
            wrong_share(w, h, b) = cast(t, selected - sum(slot_count(w, h, s, b))) / unselected;
            label(w, h, e, b) = wrong_share(w, h, b);
            label(w, h, clamp((*indices)(w, h, s, b), 0, experts - 1), b) = cast(t, slot_count(w, h, s, b));
        }

        // Per score: its gradient and its (batch-summed) BCE-with-logits term.
        std::vector<Var> score_args = {w, h, e};
        if (!shared_routing) score_args.push_back(b);
        Expr z = widen((*routing)(score_args), t);
        Expr copies = shared_routing ? cast(t, batch) : cast(t, 1);  // samples that share z
        // One exponential per score serves both: with d = exp(-|z|), σ(z) = 1/(1 + d) for z >= 0
        // and d/(1 + d) below, and softplus(z) = max(z, 0) + log(1 + d).
        Func decay("decay");
        decay(score_args) = exp(-abs(z));
        Expr d = decay(score_args);
        Expr sigmoid = select(z >= cast(t, 0), cast(t, 1), d) / (cast(t, 1) + d);
        Expr softplus = max(z, cast(t, 0)) + log(cast(t, 1) + d);
        Func gradient("gradient");
        gradient(score_args) = cast(t, *gradient_scale / elements) * (copies * sigmoid - label(score_args));
        Func term("term");
        term(score_args) = copies * softplus - z * label(score_args);

        // The mean: per grid row h in float64, then the rows in order (deterministic).
        Func row_sum("row_sum");
        RDom re = shared_routing ? RDom(0, width, 0, experts, "re") : RDom(0, width, 0, experts, 0, batch, "re");
        std::vector<Expr> term_args = {re.x, h, re.y};
        if (!shared_routing) term_args.push_back(re.z);
        row_sum(h) = cast<double>(0);
        row_sum(h) += cast<double>(term(term_args));
        RDom rows(0, height, "rows");
        Func total("total");
        total() = cast<double>(0);
        total() += row_sum(rows);

        (*grad_routing)(score_args) = narrow(gradient(score_args), dtype);
        (*loss)() = cast(t, total() / elements);

        RCLossStages stages{correct, slot_count, wrong_share, label, decay, term, row_sum, total, *grad_routing, *loss,
                            w, h, j, e, b, shared_routing};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_rc_loss(stages, Knobs("rc_loss", knobs, knobs_target, get_target()), get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::RoutingClassificationLoss, smoe_rc_loss)
