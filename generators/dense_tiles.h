// The pieces the dense_tiles algorithms share (bfloat16 on AMX tiles; the forward's and the data
// gradient's): each pixel's receptive field as one row of a matrix product, the bank as its
// columns in the pairs layout AMX reads, and their product.
#pragma once

#include "Halide.h"

namespace smoe {

constexpr int kTileDepth = 32;  // bfloat16 values of the reduction per tile row (64 bytes)

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

// dense(n, w, h, b) = Σ_k strip(k, w, h, b) · pairs(n · 2 + k % 2, k / 2), in float32.
inline Halide::Func tile_product(Halide::Func strip, Halide::Func pairs, const Halide::RDom &r, const Halide::Var &n,
                                 const Halide::Var &w, const Halide::Var &h, const Halide::Var &b) {
    using namespace Halide;
    Func dense("dense");
    dense(n, w, h, b) = cast<float>(0);
    dense(n, w, h, b) += cast<float>(strip(r.x, w, h, b)) * cast<float>(pairs(n * 2 + r.x % 2, r.x / 2));
    return dense;
}

}  // namespace smoe
