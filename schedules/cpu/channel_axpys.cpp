// CPU schedule of the input gradient's channel-axpys formulation (knob formulation=1).
//
// grad_x at a pixel is, over the taps and the slots of the neighbours it feeds, a sum of gathered
// expert rows (contiguous along the input channels) times broadcast dŷ values: each step of the
// reduction is an axpy along the channels. The vectors run along the channels, so they are full
// whatever the batch:
//
// - Register tile: `axpy_vectors` channel vectors x `axpy_batch` samples. Per step it loads that
//   many vectors of one gathered row and broadcasts one dŷ per sample.
// - Output: a tile's channels x samples are kept for `axpy_tile_vectors` vectors of neighbouring
//   pixels in L1, then written as whole vectors along the grid row (NCHW rows are contiguous along
//   w). Grids narrower than that tile write one vector per tile; narrower than a vector, one pixel
//   at a time.
// - The batch tiles halve down to one sample; the channel tiles keep the register budget.
// - dŷ is re-laid out samples-innermost for the rows a task needs, slid down its rows.
#include "channel_axpys.h"

#include <algorithm>

namespace smoe {

using namespace Halide;

namespace {

struct AxpyTile {
    int pixels;   // neighbouring pixels along w written together
    int vectors;  // channel vectors
    int batch;    // samples
};

}  // namespace

void schedule_channel_axpys_cpu(BackwardDataStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.gradient.type());
    const int registers = vector_registers(target);
    // Half the registers accumulate; the rest hold a row's vectors and the samples' broadcasts.
    const int accumulators = registers / 2;
    const int widest_batch = knobs["axpy_batch"] > 0 ? knobs["axpy_batch"] : registers / 4;
    const int row_tile = knobs["row_tile"];
    const TailStrategy tail = TailStrategy::GuardWithIf;
    // Taps outermost over the tile's pixels, then the bank's rows padded. AVX2 (AMD EPYC family 25
    // model 1, JIT, weatherbench B8 / B4 / B1): 72.7 -> 56.5 / 39.0 -> 31.6 / 17.3 -> 12.9 ms, then
    // 55.3 / 28.5 / 11.7; cifar and ens10-like within noise. AVX-512 (Intel Xeon family 6 model 207,
    // JIT, medians of 5): weatherbench B8 / B1 19.8 -> 17.3 / 5.69 -> 5.08, cifar 10.1 -> 9.5,
    // NE/E = 4 10.4 -> 9.1, ens10-like 13.7 -> 12.1; bfloat16 and float16 storage 18.5 -> 16.8 and
    // 23.3 -> 20.0 at weatherbench B8.
    const bool wide = target.has_feature(Target::AVX512);
    const bool taps_outer = knobs["axpy_taps_outer"] == 1;
    const bool pad_rows = knobs["axpy_row_padding"] == 1;

    std::vector<AxpyTile> tiles;
    for (int batch = widest_batch; batch >= 1; batch /= 2) {
        const int vectors = batch == widest_batch && knobs["axpy_vectors"] > 0 ? knobs["axpy_vectors"]
                                                                               : std::max(1, accumulators / batch);
        for (int pixels : {lanes, 1}) tiles.push_back({pixels, std::min(vectors, 4), batch});
    }
    tiles.push_back({1, 1, 1});
    // Pixel vectors per tile, where the grid is that wide. AVX2 (AMD EPYC family 25 model 1, JIT,
    // 9 rounds), 1 -> 4: weatherbench B8 48.8 -> 45.7 ms, B1 11.0 -> 10.3, cifar 34.6 -> 31.8,
    // ens10-like within noise. AVX-512 (Intel Xeon family 6 model 207, JIT, taps outer and rows
    // padded), 1 -> 2: weatherbench B8 17.1 -> 17.0, ens10-like 12.1 -> 11.9, cifar 9.47 -> 9.38;
    // 4 lost at weatherbench B8 (18.0 against 17.3).
    const int tile_vectors = knobs["axpy_tile_vectors"] > 0 ? knobs["axpy_tile_vectors"] : wide ? 2 : 4;
    auto fits = [&](const AxpyTile &t) { return s.width >= t.pixels && s.batch >= t.batch; };
    auto tile_pixels = [&](const AxpyTile &t) { return t.pixels > 1 ? t.pixels * tile_vectors : 1; };

    // The output: tasks of `row_tile` rows; per channel tile and batch tile, pixel vectors.
    Var ho("ho"), hi("hi"), wo("wo"), wi("wi"), co("co"), ci("ci"), bo("bo"), bi("bi");
    Func out = s.output;
    auto schedule_output = [&](Stage stage, const AxpyTile &t, int pixels) {
        stage.split(s.h, ho, hi, row_tile, tail)
            .split(s.w, wo, wi, pixels, TailStrategy::ShiftInwards)
            .split(s.c, co, ci, t.vectors * lanes, tail)
            .split(s.b, bo, bi, t.batch, TailStrategy::ShiftInwards)
            .reorder(wi, ci, bi, wo, bo, co, hi, ho)
            .parallel(ho)
            .unroll(bi);
        if (t.pixels > 1) stage.vectorize(wi, t.pixels);
    };
    for (size_t i = 0; i + 1 < tiles.size(); ++i) {
        // Grids narrower than the wide tile write one pixel vector per tile.
        if (tile_pixels(tiles[i]) > tiles[i].pixels) {
            schedule_output(out.specialize(fits(tiles[i]) && s.width >= tile_pixels(tiles[i])), tiles[i],
                            tile_pixels(tiles[i]));
        }
        schedule_output(out.specialize(fits(tiles[i])), tiles[i], tiles[i].pixels);
    }
    schedule_output(out, tiles.back(), 1);

    // A tile's gradient for its pixels, pixels innermost, in L1; each pixel's in registers.
    Func pixel_tile = s.gradient.in(out);
    pixel_tile.compute_at(out, wo)
        .reorder_storage(s.w, s.c, s.b, s.h)
        .reorder(s.c, s.b, s.w)
        .vectorize(s.c, lanes, tail);
    Var cv("cv");
    // Taps outermost over the tile's pixels: the pixels of a tap read rows of one tap only (a tap's
    // lines of the channel block stay in L1 across them) and their sums wait in L1. Else per pixel.
    if (taps_outer) {
        s.gradient.compute_at(out, wo);
    } else {
        s.gradient.compute_at(pixel_tile, s.w);
    }
    s.gradient.reorder_storage(s.c, s.b, s.w, s.h).vectorize(s.c, lanes, tail);
    Stage update = s.gradient.update().split(s.c, s.c, cv, lanes, tail).vectorize(cv);
    if (taps_outer) {
        update.reorder(cv, s.c, s.b, s.r.z, s.w, s.r.x, s.r.y);
    } else {
        update.reorder(cv, s.c, s.b, s.r.z, s.r.x, s.r.y);
    }
    auto register_tile = [&](Stage stage, const AxpyTile &t) {
        stage.unroll(s.c, t.vectors, tail).unroll(s.b, t.batch, tail);
    };
    for (size_t i = 0; i + 1 < tiles.size(); ++i) {
        register_tile(pixel_tile.specialize(fits(tiles[i])), tiles[i]);
        register_tile(s.gradient.specialize(fits(tiles[i])), tiles[i]);
        register_tile(s.gradient.update().specialize(fits(tiles[i])), tiles[i]);
    }

    // The bank channel-innermost, once per call: a gathered row's tap is one contiguous run.
    const std::vector<Var> k = s.bank.args();  // (kw, kh, c, row)
    s.bank.compute_root()
        .reorder_storage(k[2], k[0], k[1], k[3])
        .reorder(k[2], k[0], k[1], k[3])
        .parallel(k[3])
        .vectorize(k[2], lanes, tail);
    // Channels padded to a multiple of 48: with 128 channels x 9 taps a row is 4.5 KiB, so one
    // tap's channel block of every row falls on 8 of the 64 L1 sets; 144 spreads them.
    if (pad_rows) s.bank.align_storage(k[2], 48);

    // dŷ samples-innermost for the rows a task reads, slid down them: a slot's batch is one run.
    const std::vector<Var> g = s.grad_out.args();  // (w, h, jf, b)
    s.grad_out.store_at(out, ho).compute_at(out, hi).reorder_storage(g[3], g[2], g[0], g[1]);
    s.grad_out.reorder(g[3], g[0], g[2], g[1]);
    const int batch_lanes = std::min(lanes, widest_batch);
    s.grad_out.specialize(s.batch >= batch_lanes).vectorize(g[3], batch_lanes, tail);
    // Fewer samples than a vector: the pixels of a slot's row in the lanes, read as they lie.
    s.grad_out.vectorize(g[0], lanes, tail);
    s.expert_row.store_at(out, ho).compute_at(out, hi);
}

}  // namespace smoe
