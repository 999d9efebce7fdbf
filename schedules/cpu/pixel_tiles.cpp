// Pixel-major register tiles on the CPU.
//
// The batch goes innermost (vector lanes). The batch-innermost operand is copied for the rows a
// parallel task needs and slid down its rows; the bank is re-laid out channel-innermost. Each
// register tile holds `slots` output channels x `batch` samples: every weight is a broadcast
// reused across the batch vectors of the tile, every operand vector across its channels. The
// reduction's innermost variable is the long, unit-stride one (kw and kh alone are too short to
// amortise a loop).
#include "pixel_tiles.h"

#include <algorithm>

namespace smoe {

using namespace Halide;

namespace {

struct RegisterTile {
    int channels;
    int batch;
    int pixels;
    int batch_lanes;  // vector width along the batch (the tile's batch is a multiple of it)
};

// Vector widths along the batch, widest first: the target's natural width, then halves down to 4
// lanes, so that a batch narrower than a vector (B = 8 with AVX-512's 16 float lanes) still fills
// whole vectors instead of running masked 16-lane code.
std::vector<int> batch_widths(int lanes) {
    std::vector<int> widths = {lanes};
    for (int width = lanes / 2; width >= 4; width /= 2) widths.push_back(width);
    return widths;
}

// Widest batch first: per reduction step a tile of s channels x v batch vectors does s·v FMAs
// for s + v loads, so wide tiles need fewer loads per FMA. Narrower tiles serve smaller batches
// and fewer channels, down to a scalar tile that handles any shape.
// A tile also spans `pixels` neighbouring pixels along w (one register tile each, in turn), so
// that the output is written in whole vectors along w instead of scattered lanes.
std::vector<RegisterTile> register_tiles(int accumulators, int max_batch_vectors, int dot_channels, int lanes) {
    std::vector<RegisterTile> tiles;
    for (int pixels : {lanes, 1}) {
        for (int vectors = max_batch_vectors; vectors >= 1; vectors /= 2) {
            tiles.push_back({std::max(1, accumulators / vectors), vectors * lanes, pixels, lanes});
        }
        for (int vectors = max_batch_vectors; vectors >= 1; vectors /= 2) {
            tiles.push_back({1, vectors * lanes, pixels, lanes});
        }
        // Batches narrower than one full vector: one narrower vector per channel.
        for (int width : batch_widths(lanes)) {
            if (width == lanes) continue;
            tiles.push_back({accumulators, width, pixels, width});
            tiles.push_back({1, width, pixels, width});
        }
    }
    // Batches under 4 lanes: `dot_channels` output channels per tile, each a dot product of its own.
    if (dot_channels > 1) tiles.push_back({dot_channels, 1, 1, 1});
    tiles.push_back({1, 1, 1, 1});
    // Small accumulator counts make some of these coincide; each shape is specialised once.
    std::vector<RegisterTile> distinct;
    for (const RegisterTile &t : tiles) {
        auto same = [&](const RegisterTile &u) {
            return u.channels == t.channels && u.batch == t.batch && u.pixels == t.pixels && u.batch_lanes == t.batch_lanes;
        };
        if (std::none_of(distinct.begin(), distinct.end(), same)) distinct.push_back(t);
    }
    return distinct;
}

}  // namespace

void schedule_pixel_tiles_cpu(PixelTileStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.accumulator.type());
    const int registers = vector_registers(target);
    // ~3/4 of the vector registers accumulate; the rest hold a broadcast and the tile's operand
    // vectors (a tile of batch_vectors operand vectors needs accumulators + batch_vectors + 1
    // registers: 12 + 2 + 1 of AVX2's 16, 24 + 4 + 1 of AVX-512's 32).
    const int accumulators = knobs["accumulators"] > 0 ? knobs["accumulators"] : registers * 3 / 4;
    const int batch_vectors = knobs["batch_vectors"] > 0 ? knobs["batch_vectors"] : registers / 8;
    const int row_tile = knobs["row_tile"];
    const int dot_channels = knobs["dot_channels"];

    Var ho("ho"), hi("hi"), wo("wo"), wi("wi"), co("co"), ci("ci"), bo("bo"), bi("bi");
    Func out = s.output;
    auto schedule_output = [&](Stage stage, const RegisterTile &tile) {
        stage.split(s.h, ho, hi, row_tile, TailStrategy::GuardWithIf)
            .split(s.w, wo, wi, tile.pixels, TailStrategy::ShiftInwards)
            .split(s.channel, co, ci, tile.channels, TailStrategy::ShiftInwards)
            .split(s.b, bo, bi, tile.batch, TailStrategy::ShiftInwards)
            .parallel(ho);
        if (tile.pixels > 1) {
            stage.reorder(wi, bi, ci, bo, co, wo, hi, ho).vectorize(wi);
        } else {
            stage.reorder(bi, ci, wi, bo, co, wo, hi, ho);
            if (tile.batch_lanes > 1) stage.vectorize(bi, tile.batch_lanes);
            if (tile.channels > 1) stage.unroll(ci);
        }
    };
    // With the accumulator in L1 the register tile does not depend on the output's shape: only
    // the pixel tile is specialised (fewer specialisations also keep compile times short).
    const std::vector<RegisterTile> tiles =
        s.channel_tiles_inside_outer ? std::vector<RegisterTile>{{1, 1, lanes, 1}, {1, 1, 1, 1}}
                                     : register_tiles(accumulators, batch_vectors, dot_channels, lanes);
    // One to three samples: their tiles again, specialised on each batch size. Halide substitutes
    // the batch inside them, so the batch-innermost operand's and the accumulator's channel
    // strides become constants: vectors along channels are then dense (or interleaved) loads
    // instead of gathers. (Channel vectors keep a channel-innermost accumulator and broadcast the
    // operand: nothing to gain there.)
    const bool channel_vectors = s.channel_tiles_inside_outer && s.channel_vectors > 0;
    for (int batch = 1; batch <= 3 && !channel_vectors; ++batch) {
        for (const RegisterTile &t : tiles) {
            if (t.batch != 1) continue;
            schedule_output(out.specialize(s.batch == batch && s.width >= t.pixels && s.channels >= t.channels), t);
        }
    }
    for (size_t i = 0; i + 1 < tiles.size(); ++i) {
        const RegisterTile &t = tiles[i];
        schedule_output(out.specialize(s.width >= t.pixels && s.channels >= t.channels && s.batch >= t.batch), t);
    }
    schedule_output(out, tiles.back());

    std::vector<VarOrRVar> outer_loops(s.outer.begin(), s.outer.end());
    // Otherwise the accumulator's batch vectors follow the output tile's: specialised on the batch,
    // the widest width the batch fills first; below 4 lanes, vectors along the input channels.
    const std::vector<int> widths = batch_widths(lanes);
    if (channel_vectors) {
        // Vectors along the output channels, for every batch: each a contiguous run of a gathered
        // bank row times a broadcast operand, the tile's vectors in registers across the inner
        // reduction. The accumulator is channel-innermost; the samples and pixels of the tile
        // loop inside the channel tiles and taps, so that a tap's bank rows stay in L1.
        Var ao("ao"), ai("ai"), cv("cv");
        s.accumulator.compute_at(out, wo)
            .reorder_storage(s.channel, s.b, s.w, s.h)
            .vectorize(s.channel, lanes, TailStrategy::GuardWithIf);
        std::vector<VarOrRVar> order = {cv, ai, s.inner, s.b, s.w, ao};
        order.insert(order.end(), outer_loops.begin(), outer_loops.end());
        order.push_back(s.h);
        // Fewer channels than the tile holds take the widest tile they fill (halving the vectors)
        // instead of masking whole vectors.
        for (int vectors = s.channel_vectors; vectors >= 1; vectors /= 2) {
            Stage update = vectors > 1 ? s.accumulator.update().specialize(s.channels >= lanes * vectors)
                                       : s.accumulator.update();
            update.split(s.channel, ao, ai, lanes * vectors, TailStrategy::GuardWithIf)
                .split(ai, ai, cv, lanes, TailStrategy::GuardWithIf)
                .reorder(order)
                .vectorize(cv)
                .unroll(ai);
        }
    } else if (s.channel_tiles_inside_outer) {
        // The pixel tile's [channels x batch] accumulator stays in L1; register tiles of it are
        // loaded and stored around each pass of the inner reduction.
        Var ao("ao"), ai("ai"), ab("ab"), av("av");
        s.accumulator.compute_at(out, wo).reorder_storage(s.b, s.channel, s.w, s.h);
        std::vector<VarOrRVar> order = {av, ai, s.inner, ab, ao};
        order.insert(order.end(), outer_loops.begin(), outer_loops.end());
        order.push_back(s.w);
        order.push_back(s.h);
        s.accumulator.vectorize(s.b, lanes, TailStrategy::GuardWithIf);
        // The reduction's vectors: narrower ones for a batch narrower than a full vector.
        auto tile_update = [&](Stage update, int width) {
            update.split(s.channel, ao, ai, accumulators, TailStrategy::GuardWithIf)
                .split(s.b, ab, av, width, TailStrategy::GuardWithIf)
                .reorder(order)
                .vectorize(av)
                .unroll(ai);
        };
        for (int width : widths) tile_update(s.accumulator.update().specialize(s.batch >= width), width);
        // Fewer samples than 4 lanes: each output a dot product vectorised over the input channels,
        // `dot_channels` output channels at a time (independent chains sharing the operand).
        RVar dot_block("dot_block"), dot_lane("dot_lane");
        std::vector<VarOrRVar> dot_order = {dot_lane, s.b, ai, dot_block, ao};
        dot_order.insert(dot_order.end(), outer_loops.begin(), outer_loops.end());
        dot_order.push_back(s.w);
        dot_order.push_back(s.h);
        Stage dot = s.accumulator.update();
        dot.split(s.channel, ao, ai, dot_channels, TailStrategy::GuardWithIf)
            .atomic()
            .split(s.inner, dot_block, dot_lane, lanes, TailStrategy::GuardWithIf)
            .reorder(dot_order)
            .vectorize(dot_lane);
        if (dot_channels > 1) dot.unroll(ai);
    } else if (s.dot_partials) {
        // Lane u of a dot product's vector sums the input channels u, u + lanes, ...: the
        // tile's output channels are independent vector FMA chains over the whole reduction, and
        // each output sums its lanes once at the end instead of after every step.
        RVar channel_block("channel_block"), channel_lane("channel_lane");
        Var lane("lane");
        s.accumulator.compute_at(out, bo);
        Func partial = s.accumulator.update()
                           .split(s.inner, channel_block, channel_lane, lanes, TailStrategy::GuardWithIf)
                           .rfactor(channel_lane, lane);
        std::vector<VarOrRVar> order = {lane, s.b, s.channel, channel_block};
        order.insert(order.end(), outer_loops.begin(), outer_loops.end());
        order.push_back(s.w);
        order.push_back(s.h);
        partial.compute_at(out, bo).reorder_storage(lane, s.channel, s.b, s.w, s.h).vectorize(lane);
        partial.update().reorder(order).vectorize(lane);
        if (dot_channels > 1) partial.update().unroll(s.channel, dot_channels, TailStrategy::GuardWithIf);
        s.accumulator.update().atomic().vectorize(channel_lane);
    } else {
        // Register tiles per (pixel tile, channel tile, batch tile): batch lanes contiguous and
        // every vector of a pixel's tile unrolled, so that it lives in registers across the
        // reduction.
        s.accumulator.compute_at(out, bo).reorder_storage(s.b, s.channel, s.w, s.h);
        std::vector<VarOrRVar> order = {s.b, s.channel, s.inner};
        order.insert(order.end(), outer_loops.begin(), outer_loops.end());
        order.push_back(s.w);
        order.push_back(s.h);
        auto tile = [&](Stage stage, int width) {
            if (width > 1) {
                stage.vectorize(s.b, width, TailStrategy::GuardWithIf)
                    .unroll(s.b, batch_vectors, TailStrategy::GuardWithIf);
            }
            stage.unroll(s.channel, accumulators, TailStrategy::GuardWithIf);
        };
        s.accumulator.update().reorder(order);
        for (int width : widths) {
            tile(s.accumulator.specialize(s.batch >= width), width);
            tile(s.accumulator.update().specialize(s.batch >= width), width);
        }
        // Fewer samples than 4 lanes: no batch to vectorise, so each output is a dot product whose
        // input channels (contiguous in the operand and the bank) fill the vectors, summed across
        // the lanes at the end.
        // With several output channels per tile, each is an independent chain of vector operations
        // sharing the operand's loads.
        RVar channel_block("channel_block"), channel_lane("channel_lane");
        Stage dot = s.accumulator.update();
        dot.atomic()
            .split(s.inner, channel_block, channel_lane, lanes, TailStrategy::GuardWithIf)
            .vectorize(channel_lane);
        if (dot_channels > 1) dot.unroll(s.channel, dot_channels, TailStrategy::GuardWithIf);
    }

    const std::vector<Var> k = s.bank.args();  // (kw, kh, c, row)
    s.bank.compute_root().reorder_storage(k[2], k[0], k[1], k[3]).reorder(k[2], k[0], k[1], k[3]).parallel(k[3]);

    // The copy walks w inside k so that consecutive vectors gather from the same few pages of
    // the NCHW source (the batch lanes are a whole plane apart).
    const std::vector<Var> in = s.operand.args();  // (w, h, k, b)
    s.operand.store_at(out, ho).compute_at(out, hi).reorder_storage(in[3], in[2], in[0], in[1]);
    s.operand.reorder(in[3], in[0], in[2], in[1]).vectorize(in[3], lanes, TailStrategy::GuardWithIf);

    if (s.expert_row_by_rows) {
        s.expert_row.store_at(out, ho).compute_at(out, hi);
    } else {
        s.expert_row.compute_at(out, bo);
    }
}

}  // namespace smoe
