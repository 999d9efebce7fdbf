// The error-signal rules shared by the backward generators (DESIGN.md §4 "Damping" and
// "Backward, gate side"): tolerances, and dy with the damping of misrouted elements.
#pragma once

#include "Halide.h"

namespace smoe {

// An element is misrouted when |dy|·s > Q_b(dy) + kMisroutedTolerance.
constexpr double kMisroutedTolerance = 1e-3;
// A slot is correct when |ε|·s <= Q_b(ε) + kCorrectTolerance for all its channels.
constexpr double kCorrectTolerance = 1e-5;

// dŷ = dy · (misrouted ? δ : 1). δ = 1 leaves dy unchanged, bit for bit (damping off).
inline Halide::Expr damped_error(const Halide::Expr &dy, const Halide::Expr &quantile, const Halide::Expr &scale,
                                 const Halide::Expr &damping) {
    const Halide::Type t = dy.type();
    Halide::Expr misrouted = abs(dy) * cast(t, scale) > quantile + Halide::Internal::make_const(t, kMisroutedTolerance);
    return dy * select(misrouted, cast(t, damping), cast(t, 1));
}

}  // namespace smoe
