// CPU schedule of the weight gradient: one parallel task per band of rows. Its input rows are
// re-laid out channel-innermost; per (pixel, output channel, kh, kw) a chunk of `channel_vectors`
// channel vectors is accumulated across the batch in registers, then added to the expert's row of
// the band's partial sum. Bands are summed last, in band order, vectorised over channels.
#include "backward_weight_schedule.h"
#include "tap_tiles.h"

namespace smoe {

using namespace Halide;

namespace {

// Few channels (heat has one) leave channel vectors empty. Instead, the bands' partial sums sit in
// vector lanes: one lane per band, so a vector of pixel contributions scatters to distinct bands
// and never collides. The tasks are the taps (kh, kw). The contributions of one grid column are
// summed over the batch for all its rows at once, vectorised along the column, so the inputs are
// copied column-major (rows innermost).
void schedule_bands_in_lanes(BackwardWeightStages &s, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var tap("tap");
    s.partial.compute_root().reorder_storage(s.band, s.kw, s.kh, s.c, s.row);
    s.partial.reorder(s.band, s.row, s.kw, s.kh, s.c).fuse(s.kw, s.kh, tap).parallel(tap).vectorize(s.band, lanes, tail);
    s.partial.update()
        .reorder(s.band, s.p.z, s.p.y, s.p.x, s.kw, s.kh, s.c)
        .fuse(s.kw, s.kh, tap)
        .parallel(tap)
        .vectorize(s.band, lanes, tail);
    // One column's contributions, in one buffer per task (not allocated per column).
    s.contribution.compute_at(s.partial, s.p.y)
        .hoist_storage(s.partial, tap)
        .reorder_storage(s.h, s.kw, s.kh, s.c, s.w, s.jf);
    s.contribution.reorder(s.h, s.kw, s.kh, s.c, s.w, s.jf).vectorize(s.h, lanes, tail);
    s.contribution.update().reorder(s.h, s.rb, s.kw, s.kh, s.c, s.w, s.jf).vectorize(s.h, lanes, tail);
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_root().reorder_storage(in[1], in[0], in[2], in[3]);
    s.input.reorder(in[1], in[0], in[2], in[3]).parallel(in[3]).vectorize(in[1], lanes, tail);
    s.gated.compute_root().reorder_storage(s.h, s.w, s.jf, s.b);
    s.gated.reorder(s.h, s.w, s.jf, s.b).parallel(s.b).vectorize(s.h, lanes, tail);
    s.total.compute_root();
    s.total.update().reorder(s.t, s.kw, s.kh, s.c, s.row);
}

}  // namespace

void schedule_backward_weight_cpu(BackwardWeightStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.total.type());
    if (knobs["band_lanes"] == 1 && s.shared_routing) {
        schedule_bands_in_lanes(s, lanes);
        return;
    }
    if (knobs["formulation"] == 1 && s.shared_routing) {
        schedule_tap_tiles_cpu(s, knobs, target);
        return;
    }
    const int registers = vector_registers(target);
    const int channel_vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : registers / 2;
    const int chunk = lanes * channel_vectors;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, TailStrategy::GuardWithIf);

    // Per (pixel, output channel, kh, kw): a chunk of channels at a time, summed over the batch in
    // registers (the contribution), then added to the expert's row of the band's partial sum.
    // Narrower chunks serve fewer channels, down to scalars for C < vector width.
    Var co("co"), ci("ci");
    Stage scatter = s.partial.update();
    auto schedule_scatter = [&](Stage stage, int channels_per_chunk) {
        stage.split(s.c, co, ci, channels_per_chunk, TailStrategy::GuardWithIf);
        if (s.shared_routing) {
            stage.reorder(ci, co, s.kw, s.kh, s.p.x, s.p.y, s.p.z, s.band);
        } else {
            stage.reorder(ci, co, s.kw, s.kh, s.p.x, s.p.w, s.p.y, s.p.z, s.band);
        }
        stage.parallel(s.band);
        if (channels_per_chunk >= lanes) stage.vectorize(ci, lanes).unroll(ci);
    };
    const Expr channels = s.channels;
    if (chunk > lanes) schedule_scatter(scatter.specialize(channels >= chunk), chunk);
    schedule_scatter(scatter.specialize(channels >= lanes), lanes);
    schedule_scatter(scatter, 1);

    // A fixed-size buffer (one chunk at one pixel), so that it lives on the stack, in registers.
    s.contribution.compute_at(s.partial, co);
    for (const Var &v : s.contribution.args()) s.contribution.bound_storage(v, v.same_as(s.c) ? chunk : 1);
    s.contribution.vectorize(s.c, lanes, TailStrategy::GuardWithIf)
        .unroll(s.c, channel_vectors, TailStrategy::GuardWithIf);
    if (s.shared_routing) {
        // Fewer channels than a vector: the batch sum itself is vectorised (the copy of the input
        // keeps the batch next to the channels), then reduced across the lanes.
        s.contribution.update()
            .specialize(channels < lanes)
            .reorder(s.rb, s.c, s.kw, s.kh)
            .atomic()
            .vectorize(s.rb, lanes, TailStrategy::GuardWithIf);
        s.contribution.update()
            .reorder(s.c, s.rb, s.kw, s.kh)
            .vectorize(s.c, lanes, TailStrategy::GuardWithIf)
            .unroll(s.c, channel_vectors, TailStrategy::GuardWithIf);
    }

    // dŷ once per (slot, pixel) for the whole batch, not once per channel chunk and tap; its
    // storage (the batch, a run-time size, so on the heap) once per band, not per pixel and slot.
    s.gated.compute_at(s.partial, s.p.x).hoist_storage(s.partial, s.band);

    // Channel-innermost copy of the band's input rows (plus the halo).
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_at(s.partial, s.band).reorder_storage(in[2], in[3], in[0], in[1]);
    s.input.reorder(in[0], in[2], in[3], in[1]).vectorize(in[0], lanes, TailStrategy::GuardWithIf);

    s.total.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row);
    s.total.parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    s.total.update().reorder(s.c, s.kw, s.kh, s.t, s.row).parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    Func out = s.output;
    out.reorder(s.c, s.kw, s.kh, s.row).parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
}

}  // namespace smoe
