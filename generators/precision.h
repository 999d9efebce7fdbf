// Storage and arithmetic types of the generators. float32 and float64 kernels compute in their own
// type. float16 and bfloat16 are storage types: values are widened to float32 when read, every sum
// and comparison runs in float32, and results are rounded to the storage type only when written.
// Values that are not tensor elements of the layer (the per-sample quantile, the RC loss) stay in
// float32.
#pragma once

#include "Halide.h"

namespace smoe {

inline Halide::Type compute_type_of(const Halide::Type &storage) {
    return storage.bits() < 32 ? Halide::Float(32) : storage;
}

// bfloat16 converts through its bits: Halide's PTX back end cannot convert it (LLVM rejects the
// cast), and the same integer steps on every target give the same results everywhere.

// A stored value in the compute type (exact).
inline Halide::Expr widen(const Halide::Expr &value, const Halide::Type &compute) {
    using namespace Halide;
    if (!value.type().is_bfloat()) return cast(compute, value);
    return reinterpret(Float(32), cast(UInt(32), reinterpret(UInt(16), value)) << 16);
}

// A computed value rounded to the storage type: to nearest, ties to even, as torch rounds; a NaN
// becomes bfloat16's quiet NaN.
inline Halide::Expr narrow(const Halide::Expr &value, const Halide::Type &storage) {
    using namespace Halide;
    if (!storage.is_bfloat()) return cast(storage, value);
    Expr bits = reinterpret(UInt(32), value);
    Expr rounded = (bits + ((bits >> 16) & 1) + 0x7fff) >> 16;
    return reinterpret(storage, cast(UInt(16), select(is_nan(value), 0x7fc0, rounded)));
}

// A buffer's elements in the compute type, as a Func (inlined unless a schedule says otherwise).
template <typename Buffer>
Halide::Func widened(const Buffer &buffer, const Halide::Type &compute, const std::string &name) {
    std::vector<Halide::Var> args(buffer.dimensions());
    std::vector<Halide::Expr> at(args.begin(), args.end());
    Halide::Func f(name);
    f(args) = widen(buffer(at), compute);
    return f;
}

}  // namespace smoe
