// The pieces the dense_tiles algorithms share (bfloat16 on AMX tiles): each pixel's receptive field
// as one row of a matrix product, the bank as its columns in the pairs layout AMX reads, and their
// product (the forward's); the pairs' row stride and dŷ scattered onto every bank row (both
// gradients').
#pragma once

#include "Halide.h"

#include <string>
#include <vector>

#include "precision.h"

namespace smoe {

// An AMX tile: kTileRows rows of 64 bytes, kTileColumns float32 results or kTileDepth bfloat16
// values of the reduction per row.
constexpr int kTileRows = 16, kTileColumns = 16, kTileDepth = 32;

// `count` rows rounded up to whole tiles: what a tile product reads of an operand (the rows past
// `count` zero), and so what it must compute.
inline Halide::Expr whole_tiles(const Halide::Expr &count) { return (count + kTileRows - 1) / kTileRows * kTileRows; }

// The positions k of a receptive field's row over `count` values per tap (input channels or bank
// rows, zero-padded to whole blocks of kTileDepth): block, then tap (kh, kw), then the value of the
// block. k / kTileDepth comes first, so that a vector of one chunk's positions simplifies to one tap
// and a ramp of contiguous values.
struct FieldOrder {
    Halide::Expr K, count;
    Halide::Expr depth() const { return (count + kTileDepth - 1) / kTileDepth * K * K * kTileDepth; }
    Halide::Expr value_of(const Halide::Expr &k) const {
        return k / kTileDepth / (K * K) * kTileDepth + k % kTileDepth;
    }
    Halide::Expr tap_of(const Halide::Expr &k) const { return (k / kTileDepth) % (K * K); }
};

// columns(k, n), zero past n = column_count, in AMX's pairs layout: (n · 2 + k % 2, k / 2), one
// stride between the pairs, which Halide's AMX matcher needs.
inline Halide::Func in_pairs_layout(Halide::Func columns, const Halide::Expr &column_count, const Halide::Var &pair) {
    using namespace Halide;
    Var half("half");
    Func padded = BoundaryConditions::constant_exterior(columns, cast(columns.type(), 0),
                                                        {{Expr(), Expr()}, {0, column_count}});
    Func pairs("bank_pairs");
    pairs(pair, half) = padded(half * 2 + pair % 2, pair / 2);
    return pairs;
}

// The row stride of a pairs layout over `columns` columns: the columns rounded up to whole tiles, in
// pairs, and one 64-byte line more. Each row then starts on a cache line, so that every tile row is
// one aligned load (rows one pair longer split most tile rows across two lines: JIT, Intel Xeon
// family 6 model 167, the weight gradient 16.2-16.7 against 9.5-9.6 ms at weatherbench), and no
// row is exactly a tile's, which Halide would merge into one ramp. Written as one sum on purpose:
// Halide's AMX matcher takes the stride as one term and does not recognise the `e * 2` the
// simplifier makes of a realized extent.
inline Halide::Expr pairs_row_stride(const Halide::Expr &columns) { return whole_tiles(columns) * 2 + kTileDepth; }

// dŷ of every bank row at every grid pixel in bfloat16 (both gradients' operand before its padding):
// zero where the row is not selected, each selected slot's `gated` value rounded once. Routing is a
// permutation of distinct experts in practice; repeated experts at a pixel add up (each addition
// rounded to bfloat16). `slot` is the scatter's reduction, for the schedule.
//   RowLayout::PixelsInnermost: (w, row, h, b), the weight gradient's left operand;
//   RowLayout::RowPairs: (row % 2, w, row / 2, h, b), pixels innermost with each two neighbouring
//   rows interleaved (AMX's pairs layout over the rows), the data gradient's right operand.
enum class RowLayout { PixelsInnermost, RowPairs };

inline Halide::Func scatter_onto_rows(Halide::Func gated, Halide::Func routing, const Halide::RDom &slot,
                                      const Halide::Expr &experts, const Halide::Expr &F, RowLayout layout,
                                      const Halide::Var &w, const Halide::Var &h, const Halide::Var &b) {
    using namespace Halide;
    const Expr rows = experts * F;
    Expr selected =
        unsafe_promise_clamped(clamp(routing(w, h, slot / F), 0, experts - 1) * F + slot % F, 0, rows - 1);
    Var row("row"), parity("parity"), row_pair("row_pair");
    auto at = [&](const Expr &r) {
        return layout == RowLayout::PixelsInnermost ? std::vector<Expr>{w, r, h, b}
                                                    : std::vector<Expr>{r % 2, w, r / 2, h, b};
    };
    std::vector<Var> pure = layout == RowLayout::PixelsInnermost ? std::vector<Var>{w, row, h, b}
                                                                 : std::vector<Var>{parity, w, row_pair, h, b};
    Func grid_error("grid_error");
    grid_error(pure) = cast(BFloat(16), 0);
    grid_error(at(selected)) = narrow(widen(grid_error(at(selected)), Float(32)) + gated(w, h, slot, b), BFloat(16));
    return grid_error;
}

// product(args) = Σ left · right over the reduction both operands name, bfloat16 operands summed in
// float32: what an AMX tile accumulates, `right` read in AMX's pairs layout. Each algorithm's three
// matrix products (the forward's, both gradients') are one of these.
inline Halide::Func tile_product(const std::string &name, const std::vector<Halide::Var> &args,
                                 const Halide::Expr &left, const Halide::Expr &right) {
    using namespace Halide;
    Func product(name);
    product(args) = cast<float>(0);
    product(args) += cast<float>(left) * cast<float>(right);
    return product;
}

}  // namespace smoe
