// The inverse of a shared routing, per group of `span` neighbouring pixels of a grid row: for every
// expert, the group's pixels that select it, in order, all experts' lists one after the other in
// one list per group. Made from the pixels' slots (which experts each pixel selects, then a running
// count per expert along the group), with no test per pixel. The weight gradient's expert groups
// (generators/backward_weight_generator.cpp) sum over it.
#pragma once

#include <string>

#include "Halide.h"

namespace smoe {

struct ExpertLists {
    Halide::Func selects;      // (e, w, h): 1 where pixel w selects expert e; update over the slots
    Halide::Func before;       // (e, i, g, h): pixels of group g before its pixel i that select e; update over later
    Halide::Func pixel_count;  // (e, g, h): how many pixels of group g select e
    Halide::Func list_start;   // (e, g, h): where e's pixels start in the group's list; update over next
    Halide::Var e, i, w, g, h;
    Halide::RDom later, next;
    Halide::Expr span, groups, entries;  // pixels per group, groups per row, entries per group's list

    // Where pixel `in_group` of group `group` of row `row` stands in the list of the expert its
    // slot `slot` selects. Indices are range-checked by the caller; the clamps only bound the
    // lookups for Halide.
    Halide::Expr place(const Halide::Expr &slot, const Halide::Expr &in_group, const Halide::Expr &group,
                       const Halide::Expr &row) const;

    Halide::Func indices;  // (w, h, j)
    Halide::Expr width, experts;
};

// Batches of this many samples or more sum over groups of their own length (the weight gradient's
// batched_group_pixels): their receptive fields are that many times larger.
constexpr int kBatchedGroupSamples = 8;

// The group lengths a generator may ask for: running counts are 16-bit, so below 65536.
inline void check_group_pixels(const char *name, int group_pixels) {
    if (group_pixels <= 0 || group_pixels > 65535) {
        throw Halide::CompileError(std::string("smoe: expert lists need 0 < ") + name + " < 65536 (16-bit running counts)");
    }
}

// Lists for groups of `group_pixels` pixels (a run-time length; a narrower grid is one group per
// row). Indices of a pixel are distinct, so an expert's list holds at most a group's pixels; were
// one repeated, the pixel would be listed once.
ExpertLists make_expert_lists(Halide::Func indices, const Halide::Expr &width, const Halide::Expr &selected,
                              const Halide::Expr &experts, const Halide::Expr &group_pixels);

inline Halide::Expr ExpertLists::place(const Halide::Expr &slot, const Halide::Expr &in_group,
                                       const Halide::Expr &group, const Halide::Expr &row) const {
    using namespace Halide;
    Expr expert = clamp(indices(min(group * span + in_group, width - 1), row, slot), 0, experts - 1);
    return clamp(list_start(expert, group, row) + cast<int32_t>(before(expert, in_group, group, row)), 0,
                 entries - 1);
}

inline ExpertLists make_expert_lists(Halide::Func indices, const Halide::Expr &width, const Halide::Expr &selected,
                                     const Halide::Expr &experts, const Halide::Expr &group_pixels) {
    using namespace Halide;
    ExpertLists l;
    l.indices = indices;
    l.width = width;
    l.experts = experts;
    l.e = Var("e"), l.i = Var("i"), l.w = Var("w"), l.g = Var("g"), l.h = Var("h");
    const Var &e = l.e, &i = l.i, &w = l.w, &g = l.g, &h = l.h;
    l.span = min(group_pixels, width);
    l.groups = (width + l.span - 1) / l.span;
    l.entries = l.span * selected;

    RDom slots(0, selected, "slots");
    l.selects = Func("selects");
    l.selects(e, w, h) = cast<uint8_t>(0);
    l.selects(clamp(indices(w, h, slots), 0, experts - 1), w, h) = cast<uint8_t>(1);
    // Pixels past the grid's edge select nothing.
    auto selected_at = [&](const Expr &at) {
        return select(at < width, cast<uint16_t>(l.selects(e, min(at, width - 1), h)), cast<uint16_t>(0));
    };
    l.later = RDom(1, l.span - 1, "later");
    l.before = Func("before");
    l.before(e, i, g, h) = cast<uint16_t>(0);
    l.before(e, l.later, g, h) = l.before(e, l.later - 1, g, h) + selected_at(g * l.span + l.later - 1);
    l.pixel_count = Func("pixel_count");
    l.pixel_count(e, g, h) =
        cast<int32_t>(l.before(e, l.span - 1, g, h) + selected_at(g * l.span + l.span - 1));
    l.next = RDom(1, experts - 1, "next");
    l.list_start = Func("list_start");
    l.list_start(e, g, h) = 0;
    l.list_start(l.next, g, h) = l.list_start(l.next - 1, g, h) + l.pixel_count(l.next - 1, g, h);
    return l;
}

}  // namespace smoe
