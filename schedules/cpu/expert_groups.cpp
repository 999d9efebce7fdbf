// CPU schedule of the weight gradient's expert-major order (generator group_pixels > 0, shared
// routing).
//
// Per (group of pixels, kh, expert row) a register tile of a row of taps x a block of
// `channel_vectors` channel vectors sums, over the group's pixels that select the expert and the
// batch, one broadcast dŷ times a vector of the receptive field per accumulator; then it is added
// to the row of the band's partial sum once. The pixel-major order adds to the row once per pixel:
// with few samples that read-modify-write, not the FMAs, sets the pace.
//
// - A task is a band; inside it the channel blocks are outermost, then rows, groups and kh, with
//   the experts innermost: the group's input row for one kh (a block of channels x samples) stays
//   in L1 while every expert visits it, the band's partial rows of the block stay in L2.
// - The inverse of the routing (slot_of, the groups' pixel masks and lists) is made per band.
#include "backward_weight_schedule.h"

namespace smoe {

using namespace Halide;

namespace {

// Taps along kw in one register tile: a K = 3 row (every benchmark layer), a 5 or 7 in passes.
constexpr int kTaps = 3;

}  // namespace

void schedule_expert_groups(ExpertGroupStages &s, const Knobs &knobs, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's expert groups (group_pixels > 0) are scheduled for CPUs only");
    }
    const int lanes = target.natural_vector_size(s.total.type());
    const int registers = target.has_feature(Target::AVX512) ? 32 : 16;
    // kTaps x channel_vectors accumulators: 3 x 4 of AVX-512's 32 registers, 3 x 2 of AVX2's 16.
    const int channel_vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : registers / 8;
    const int block = lanes * channel_vectors;
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const RVar group = s.rg.x, band_row = s.rg.y;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, tail);
    Var co("co"), ci("ci"), kwo("kwo"), kwi("kwi");
    s.partial.update()
        .split(s.c, co, ci, block, tail)
        .split(s.kw, kwo, kwi, kTaps, tail)
        .reorder(ci, kwi, kwo, s.row, s.kh, group, band_row, co, s.band)
        .parallel(s.band)
        .vectorize(ci, lanes)
        .unroll(ci)
        .unroll(kwi);

    // The register tile: kTaps taps x a block of channels of one (group, kh, expert row); per
    // sample the group's pixels that select the expert innermost, so that their count bounds the
    // innermost loop.
    s.contribution.compute_at(s.partial, kwo).reorder_storage(s.c, s.kw, s.kh, s.row, s.g, s.h);
    for (const Var &v : s.contribution.args()) {
        s.contribution.bound_storage(v, v.same_as(s.c) ? block : v.same_as(s.kw) ? kTaps : 1);
    }
    auto register_tile = [&](Stage stage) {
        stage.vectorize(s.c, lanes, tail).unroll(s.c, channel_vectors, tail).unroll(s.kw, kTaps, tail);
    };
    register_tile(s.contribution);
    s.contribution.update().reorder(s.c, s.kw, s.kh, s.r.x, s.r.y);
    register_tile(s.contribution.update());

    // The band's inverse of the routing: slots per (expert, pixel), vectorised over the experts
    // where the loads are contiguous.
    s.slot_of.compute_at(s.partial, s.band).reorder_storage(s.e, s.w, s.h).vectorize(s.e, lanes, tail);
    s.slot_of.update().unscheduled();  // per pixel its slots, scattered: nothing to vectorise
    s.pixel_mask.compute_at(s.partial, s.band).reorder_storage(s.e, s.g, s.h).vectorize(s.e, lanes, tail);
    s.pixel_mask.update().reorder(s.e, s.mask_pixels.x, s.g, s.h).vectorize(s.e, lanes, tail);
    s.group_pixel.compute_at(s.partial, s.band).reorder_storage(s.k, s.e, s.g, s.h);

    // dŷ once per call, samples innermost: a (pixel, slot)'s batch is one contiguous run.
    const std::vector<Var> g = s.gated.args();  // (w, h, jf, b)
    s.gated.compute_root().reorder_storage(g[3], g[2], g[0], g[1]);
    s.gated.reorder(g[0], g[3], g[2], g[1]).parallel(g[1]).vectorize(g[0], lanes, tail);

    // The block's input channel-innermost for the band's rows and halo, samples next.
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_at(s.partial, co).reorder_storage(in[2], in[3], in[0], in[1]);
    s.input.reorder(in[2], in[3], in[0], in[1]).vectorize(in[2], lanes, tail);

    s.total.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row);
    s.total.parallel(s.row).vectorize(s.c, lanes, tail);
    s.total.update().reorder(s.c, s.kw, s.kh, s.t, s.row).parallel(s.row).vectorize(s.c, lanes, tail);
    s.output.reorder(s.c, s.kw, s.kh, s.row).parallel(s.row).vectorize(s.c, lanes, tail);
}

}  // namespace smoe
