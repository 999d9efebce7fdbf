// CPU schedule of the forward: pixel-major register tiles.
//
// At one pixel the selected experts form an [E·F x C·K·K] matrix and the receptive field of the
// batch a [C·K·K x B] matrix, so each pixel is a small GEMM. The batch goes innermost (vector
// lanes), the input is re-laid out batch-innermost a few rows at a time (a sliding window over
// the rows of a parallel task), the bank is re-laid out channel-innermost, and each register tile holds slot_tile output channels times
// batch_vector samples. Every weight is a broadcast reused across the lanes; every input vector
// is reused across the slots of the tile.
#include "forward_schedule.h"

namespace smoe {

using namespace Halide;

namespace {

struct ForwardTile {
    int slots;
    int batch;
};

}  // namespace

void schedule_forward_cpu(ForwardStages &s, const ForwardKnobs &knobs, const Target &target) {
    const Type type = s.output.type();
    const int lanes = target.natural_vector_size(type);
    const int registers = target.has_feature(Target::AVX512) ? 32 : 16;
    // Default tile: a few vectors of batch and enough slots to use ~3/4 of the vector registers
    // as accumulators (the rest hold the input vector and the weight broadcasts).
    const int batch_vector = knobs.batch_vector > 0 ? knobs.batch_vector : lanes;
    const int accumulators = registers * 3 / 4;
    const int slot_tile = knobs.slot_tile > 0 ? knobs.slot_tile
                                              : std::max(1, accumulators / std::max(1, batch_vector / lanes));
    const int row_tile = knobs.row_tile > 0 ? knobs.row_tile : 4;

    Var ho("ho"), hi("hi"), jfo("jfo"), jfi("jfi"), bo("bo"), bi("bi");
    Func y = s.output;

    // Largest tile first; smaller grids and batches fall through to smaller tiles.
    const std::vector<ForwardTile> tiles = {
        {slot_tile, batch_vector}, {1, batch_vector}, {1, lanes}, {1, 1}};
    auto schedule_output = [&](Stage stage, const ForwardTile &tile) {
        stage.split(s.h, ho, hi, row_tile, TailStrategy::GuardWithIf)
            .split(s.jf, jfo, jfi, tile.slots, TailStrategy::ShiftInwards)
            .split(s.b, bo, bi, tile.batch, TailStrategy::ShiftInwards)
            .reorder(bi, jfi, bo, jfo, s.w, hi, ho)
            .parallel(ho);
        if (tile.batch >= lanes) stage.vectorize(bi, lanes);
        if (tile.slots > 1) stage.unroll(jfi);
    };
    for (size_t i = 0; i + 1 < tiles.size(); ++i) {
        const ForwardTile &tile = tiles[i];
        if (i > 0 && tile.slots == tiles[i - 1].slots && tile.batch == tiles[i - 1].batch) continue;
        schedule_output(y.specialize(s.out_channels >= tile.slots && s.batch >= tile.batch), tile);
    }
    schedule_output(y, tiles.back());

    // One register tile of accumulators per (pixel, slot tile, batch tile).
    s.response.compute_at(y, bo)
        .reorder_storage(s.b, s.jf, s.w, s.h)  // batch lanes contiguous: whole-vector accumulators
        .vectorize(s.b, lanes, TailStrategy::GuardWithIf)
        .unroll(s.jf, slot_tile, TailStrategy::GuardWithIf);
    // Channels innermost: a long, unit-stride walk through both the batch-innermost input and
    // the channel-innermost bank (kw and kh alone are too short to amortise the loop).
    s.response.update()
        .reorder(s.b, s.jf, s.r.z, s.r.x, s.r.y, s.w, s.h)
        .vectorize(s.b, lanes, TailStrategy::GuardWithIf)
        .unroll(s.jf, slot_tile, TailStrategy::GuardWithIf);
    s.expert_row.compute_at(y, bo);
    const std::vector<Var> k = s.bank.args();  // (kw, kh, c, row)
    s.bank.compute_root().reorder_storage(k[2], k[0], k[1], k[3]).reorder(k[2], k[0], k[1], k[3]).parallel(k[3]);

    // Batch-innermost copy of the input rows a parallel task needs, slid down its rows.
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.store_at(y, ho).compute_at(y, hi).reorder_storage(in[3], in[2], in[0], in[1]);
    s.input.reorder(in[3], in[2], in[0], in[1]).vectorize(in[3], lanes, TailStrategy::GuardWithIf);
}

}  // namespace smoe
