// CPU schedule of the forward's channel-dots formulation (knob formulation=1).
//
// Each output y[b, j, h, w] is a dot product of a gathered expert row with the receptive field,
// both contiguous along the input channels once the input is re-laid out channel-innermost. The
// vectors run along the channels, so they are full whatever the batch (the pixel tiles put the
// batch in the lanes, which a batch of 8 fills only half of on AVX-512):
//
// - Register tile: `slots` output channels x `batch` samples, each a vector of partial sums (lane u
//   sums the channels u, u + lanes, ...) held in registers over the whole reduction (channels
//   innermost, then kw, kh). Per step the tile loads `slots` weight vectors and `batch` input
//   vectors for slots x batch FMAs.
// - Lane sums: a tile's partial sums are kept for `lanes` neighbouring pixels in L1, then reduced
//   across the lanes in one transposing reduction that yields whole vectors along the grid row,
//   stored as they are. Fewer pixels than a vector (narrow grids) reduce one output at a time.
// - The batch tiles halve down to one sample, so every batch gets the widest tile it fills; those of
//   one or two samples hold at most 4 slots (4 gathered rows streamed at once).
// - bf16_pairs (bfloat16 on CPUs with bf16 dot products): the reduction runs over blocks of 32
//   channels, lane u of a block summing its channels 2u and 2u + 1; a step's two products per lane
//   are one dot-product instruction (vdpbf16ps) on a vector of 32 bfloat16 weights and inputs.
#include "channel_dots.h"

#include <algorithm>

#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

namespace {

struct DotTile {
    int pixels;  // neighbouring pixels along w whose lane sums are reduced together
    int slots;   // output channels
    int batch;   // samples
};

}  // namespace

void schedule_channel_dots_cpu(ForwardStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.response.type());
    const int registers = vector_registers(target);
    // 3/4 of the vector registers accumulate; the rest hold the step's weight and input vectors.
    const int accumulators = registers * 3 / 4;
    const int widest_batch = knobs["dot_batch"] > 0 ? knobs["dot_batch"] : registers / 4;
    const int row_tile = knobs["row_tile"];
    // Input channels, or with bf16_pairs the padded channels' pairs.
    const Expr channels = s.bf16_pairs ? s.r.z.extent() * (s.r.w.extent() / 2) : s.r.z.extent();

    // Tiles of one or two samples hold at most this many slots: each slot streams its own gathered
    // weight row from L2, and past four streams the loads, not the FMAs, set the pace (measured at
    // B = 1 and 2 on AVX-512 and AVX2: 24 or 12 slots were 10-30% slower than 4).
    constexpr int kFewSampleSlots = 4;
    std::vector<DotTile> tiles;
    for (int batch = widest_batch; batch >= 1; batch /= 2) {
        int slots = std::max(1, accumulators / batch);
        if (batch <= 2) slots = std::min(slots, kFewSampleSlots);
        if (batch == widest_batch && knobs["dot_slots"] > 0) slots = knobs["dot_slots"];
        for (int pixels : {lanes, 1}) tiles.push_back({pixels, slots, batch});
    }
    tiles.push_back({1, 1, 1});
    auto fits = [&](const DotTile &t) { return s.width >= t.pixels && s.out_channels >= t.slots && s.batch >= t.batch; };

    // The output: tasks of `row_tile` rows; per pixel vector, tiles of slots x samples.
    Var ho("ho"), hi("hi"), wo("wo"), wi("wi"), co("co"), ci("ci"), bo("bo"), bi("bi");
    Func out = s.output;
    auto schedule_output = [&](Stage stage, const DotTile &t) {
        stage.split(s.h, ho, hi, row_tile, TailStrategy::GuardWithIf)
            .split(s.w, wo, wi, t.pixels, TailStrategy::ShiftInwards)
            .split(s.jf, co, ci, t.slots, TailStrategy::ShiftInwards)
            .split(s.b, bo, bi, t.batch, TailStrategy::ShiftInwards)
            .reorder(wi, bi, ci, co, bo, wo, hi, ho)
            .parallel(ho)
            .unroll(bi)
            .unroll(ci);
        if (t.pixels > 1) stage.vectorize(wi);
    };
    for (size_t i = 0; i + 1 < tiles.size(); ++i) schedule_output(out.specialize(fits(tiles[i])), tiles[i]);
    schedule_output(out, tiles.back());

    // Partial sums in lanes: the reduction's channels split into blocks of `lanes`, the lane kept.
    RVar block("block"), lane_of_block("lane_of_block"), member("member");
    Var lane("lane");
    s.response.compute_at(out, co);
    if (s.bf16_pairs) {
        // The generator's blocks of 32 channels: 16 lanes of pairs.
        block = s.r.z;
        s.response.update().split(s.r.w, lane_of_block, member, 2);
    } else {
        s.response.update().split(s.r.z, block, lane_of_block, lanes, TailStrategy::GuardWithIf);
    }
    Func partial = s.response.update().rfactor(lane_of_block, lane);
    // The lane sums of a pixel vector: one reduction that transposes as it adds.
    s.response.update()
        .specialize(channels >= lanes && s.width >= lanes)
        .atomic()
        .reorder(lane_of_block, s.w, s.b, s.jf)
        .vectorize(lane_of_block)
        .vectorize(s.w, lanes);

    // A tile's partial sums for its pixels, in L1; each pixel's computed in registers.
    Func pixel_partials = partial.in(s.response);
    pixel_partials.compute_at(out, co)
        .hoist_storage(out, ho)
        .reorder_storage(lane, s.w, s.jf, s.b)
        .reorder(lane, s.b, s.jf, s.w)
        .vectorize(lane);
    partial.compute_at(pixel_partials, s.w).reorder_storage(lane, s.w, s.h, s.jf, s.b).vectorize(lane);
    if (s.bf16_pairs) {
        // The two members of a pair summed within the lane: the dot-product instruction.
        partial.update().reorder(member, lane, s.jf, s.b, block, s.r.x, s.r.y).atomic().vectorize(member);
    } else {
        partial.update().reorder(lane, s.jf, s.b, block, s.r.x, s.r.y);
    }
    partial.update().vectorize(lane);
    auto register_tile = [&](Stage stage, const DotTile &t) {
        stage.unroll(s.b, t.batch, TailStrategy::GuardWithIf).unroll(s.jf, t.slots, TailStrategy::GuardWithIf);
    };
    for (size_t i = 0; i + 1 < tiles.size(); ++i) {
        const Expr tile_fits = fits(tiles[i]);
        register_tile(partial.specialize(tile_fits), tiles[i]);
        // Whole blocks of channels: no tail in the reduction, so the tile stays in registers.
        register_tile(partial.update().specialize(tile_fits && channels % lanes == 0), tiles[i]);
        register_tile(partial.update().specialize(tile_fits), tiles[i]);
    }

    // The bank channel-innermost, once per call: a gathered row's taps are contiguous runs.
    const int operand_lanes = target.natural_vector_size(s.bank.type());
    const std::vector<Var> k = s.bank.args();  // (kw, kh, c, row)
    s.bank.compute_root()
        .reorder_storage(k[2], k[0], k[1], k[3])
        .reorder(k[2], k[0], k[1], k[3])
        .parallel(k[3])
        .vectorize(k[2], operand_lanes, TailStrategy::GuardWithIf);

    // The input channel-innermost, once per call: a tap's channels and its neighbours along kw are
    // one contiguous run per sample.
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_root().reorder_storage(in[2], in[0], in[3], in[1]);
    schedule_channels_innermost_copy(s.input, in[2], in[0], operand_lanes, lanes, {in[3], in[1]}).parallel(in[1]);

    // Shared routing: the rows of a pixel vector's slots once; per sample they differ per tile.
    s.expert_row.compute_at(out, s.shared_routing ? wo : co);
}

}  // namespace smoe
