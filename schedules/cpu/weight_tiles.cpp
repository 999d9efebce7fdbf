#include "weight_tiles.h"

#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

WeightTile weight_tile(const Knobs &knobs, const Target &target, const Type &type) {
    const int lanes = target.natural_vector_size(type);
    // 4 channel vectors x a row of 3 taps: 12 accumulators, which AVX2's 16 registers hold too
    // (AVX2, JIT: the expert groups at ens10-like 40.2 -> 27.8 ms against 2 vectors).
    const int vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : kTileChannelVectors;
    return {lanes, vectors, lanes * vectors};
}

void schedule_band_blocks(Func partial, const WeightTile &tile, Var c, Var kw, Var kh, Var row, Var band,
                          const std::vector<VarOrRVar> &middle, Var &block, Var &taps) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    partial.compute_root().reorder_storage(c, kw, kh, row, band);
    partial.reorder(c, kw, kh, row, band).parallel(band).vectorize(c, tile.lanes, tail);
    Var ci("ci"), kwi("kwi");
    block = Var("co");
    taps = Var("kwo");
    std::vector<VarOrRVar> order = {ci, kwi, taps};
    order.insert(order.end(), middle.begin(), middle.end());
    order.push_back(block);
    order.push_back(band);
    partial.update()
        .split(c, block, ci, tile.block, tail)
        .split(kw, taps, kwi, kTileTaps, tail)
        .reorder(order)
        .parallel(band)
        .vectorize(ci, tile.lanes)
        .unroll(ci)
        .unroll(kwi);
}

void schedule_register_tile(Func tile, const WeightTile &layout, Var c, Var kw, const LoopLevel &at,
                            const std::vector<VarOrRVar> &order) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    std::vector<Var> storage = tile.args();
    // c first, then kw: the tile's vectors are contiguous runs of channels.
    std::vector<Var> reordered = {c, kw};
    for (const Var &v : storage) {
        if (!v.same_as(c) && !v.same_as(kw)) reordered.push_back(v);
    }
    tile.compute_at(at).reorder_storage(reordered);
    for (const Var &v : storage) tile.bound_storage(v, v.same_as(c) ? layout.block : v.same_as(kw) ? kTileTaps : 1);
    auto registers = [&](Stage stage) {
        stage.vectorize(c, layout.lanes, tail).unroll(c, layout.channel_vectors, tail).unroll(kw, kTileTaps, tail);
    };
    registers(tile);
    tile.update().reorder(order);
    registers(tile.update());
}

void schedule_samples_innermost(Func gated, int lanes, int samples, const Expr &whole_tiles, const Expr &width) {
    const std::vector<Var> g = gated.args();  // (w, h, jf, b)
    gated.compute_root().reorder_storage(g[3], g[2], g[0], g[1]);
    // A transpose: dense runs of samples (one vector per pixel) for each of `lanes` unrolled pixels,
    // where the batch is a whole number of tiles; the zero border is then a scalar test per pixel.
    Var wo("wo"), wi("wi"), bo("bo"), bi("bi");
    gated.specialize(whole_tiles && width >= lanes)
        .split(g[0], wo, wi, lanes, TailStrategy::ShiftInwards)
        .split(g[3], bo, bi, samples)
        .reorder(bi, wi, bo, g[2], wo, g[1])
        .parallel(g[1])
        .vectorize(bi)
        .unroll(wi);
    gated.reorder(g[0], g[3], g[2], g[1]).parallel(g[1]).vectorize(g[0], lanes, TailStrategy::GuardWithIf);
}

void schedule_block_input(Func input, const LoopLevel &at, int lanes) {
    const std::vector<Var> in = input.args();  // (w, h, c, b)
    input.compute_at(at).reorder_storage(in[2], in[3], in[0], in[1]);
    schedule_channels_innermost_copy(input, in[2], in[0], lanes, lanes, {in[3], in[1]});
}

void schedule_band_sum(Func total, Func output, Var c, Var kw, Var kh, Var row, RVar t, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    total.compute_root().reorder_storage(c, kw, kh, row);
    total.parallel(row).vectorize(c, lanes, tail);
    total.update().reorder(c, kw, kh, t, row).parallel(row).vectorize(c, lanes, tail);
    output.reorder(c, kw, kh, row).parallel(row).vectorize(c, lanes, tail);
}

}  // namespace smoe
