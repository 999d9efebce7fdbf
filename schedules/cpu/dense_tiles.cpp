// CPU schedule of the forward's dense_tiles algorithm (bfloat16 on AMX tiles; generator parameter
// dense_tiles=true, avx512_sapphirerapids targets).
//
// - The input is re-laid out channels innermost once (channels_last), so that each chunk of a
//   pixel's receptive field (one tap, a block of 32 channels) is contiguous.
// - The output runs in strips of kPixels pixels of one grid row, the rows of every sample in
//   parallel. Per strip the pixels' receptive fields are copied into one row each (strip), in L1;
//   dense_rows then holds every expert row's response at the strip's pixels, [rows x kPixels] in
//   float32, and each output channel reads its expert's row there, a vector along the strip.
// - dense_rows is made tile by tile: an AMX tile accumulates kTileRows expert rows x kPixels pixels
//   over the padded depth, kTileDepth bfloat16 values per step (one tdpbf16ps of 16 x 32 by 32 x 16).
//   The expert rows are rounded up to whole tiles (the padded bank columns are zero), so that every
//   tile is whole: Halide's AMX matcher takes constant 2-D tiles only.
// - The bank is re-laid out in AMX's pairs layout once per call (bank_pairs).
#include "forward_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_forward_dense_tiles(DenseTileStages &s, const Target &target) {
    constexpr int kPixels = 16, kTileRows = 16, kTileDepth = 32;
    const int lanes = target.natural_vector_size(Float(32));
    Var hb("hb"), wo("wo"), wi("wi");
    s.output.split(s.w, wo, wi, kPixels, TailStrategy::GuardWithIf)
        .reorder(wi, s.jf, wo, s.h, s.b)
        .fuse(s.h, s.b, hb)
        .parallel(hb)
        .vectorize(wi);

    s.channels_last.compute_root().fuse(s.h, s.b, hb).parallel(hb).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    s.bank_pairs.compute_root().vectorize(s.pair, lanes, TailStrategy::GuardWithIf);

    Var kc("kc"), ki("ki");
    s.strip.compute_at(s.output, wo).split(s.k, kc, ki, kTileDepth).reorder(ki, s.w, kc).vectorize(ki);

    Var ro("ro"), ri("ri"), po("po"), pi("pi");
    s.dense_rows.compute_at(s.output, wo)
        .tile(s.row, s.w, ro, po, ri, pi, kTileRows, kPixels, TailStrategy::RoundUp)
        .reorder(ri, pi, ro, po)
        .vectorize(ri)
        .vectorize(pi);

    Var zr("zr"), zp("zp"), tr("tr"), tp("tp");
    RVar chunk("chunk"), chunk_value("chunk_value");
    s.dense.compute_at(s.dense_rows, ro)
        .store_in(MemoryType::AMXTile)
        .tile(s.row, s.w, zr, zp, kTileRows, kPixels)
        .vectorize(zr)
        .vectorize(zp);
    s.dense.update()
        .tile(s.row, s.w, tr, tp, kTileRows, kPixels, TailStrategy::GuardWithIf)
        .split(s.r, chunk, chunk_value, kTileDepth)
        .reorder({chunk_value, tr, tp, chunk, s.row, s.w, s.h, s.b})
        .atomic()
        .vectorize(chunk_value)
        .vectorize(tr)
        .vectorize(tp);
}

}  // namespace smoe
