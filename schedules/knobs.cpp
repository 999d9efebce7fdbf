#include "knobs.h"

#include <algorithm>
#include <iostream>
#include <sstream>

namespace smoe {

using namespace Halide;

namespace {

const std::vector<KnobSpec> &pixel_tile_knobs_cpu() {
    static const std::vector<KnobSpec> knobs = {
        {"accumulators", {4, 6, 8, 12, 16, 20, 24}, 0,
         "vector registers per register tile (0: 3/4 of the registers, 12 on AVX2, 24 on AVX-512)", {0}},
        {"batch_vectors", {1, 2, 4}, 0, "widest register tile, in batch vectors (0: registers / 8)", {0}},
        {"row_tile", {1, 2, 4, 8}, 4, "grid rows per parallel task"},
        {"dot_channels", {1, 2, 4, 8}, 1,
         "batches under 4 lanes: output channels per register tile, each a dot product vectorised "
         "over input channels (1: one at a time)", {0}},
    };
    return knobs;
}

const std::vector<KnobSpec> &backward_data_knobs_cpu() {
    static const std::vector<KnobSpec> knobs = [] {
        // The formulation first: the tuner's descent goes through the knobs in this order.
        std::vector<KnobSpec> all = {
            {"formulation", {0, 1}, 0,
             "0: pixel tiles; 1: channel axpys, per pixel channel vectors x samples in registers, each step a "
             "gathered row times broadcast dy, written in pixel vectors"},
            {"axpy_batch", {1, 2, 4, 8}, 0, "channel axpys: samples of the widest register tile (0: registers / 4)",
             {1}},
            {"axpy_vectors", {1, 2, 3, 4}, 0,
             "channel axpys: channel vectors of the widest register tile (0: half the registers / axpy_batch)", {1}},
            // Both on for every target since they were measured on AVX-512 too, so no "target's
            // choice" value: it would be a second name for 1 that the tuner times twice.
            {"axpy_taps_outer", {1, 2}, 1,
             "channel axpys: 1: taps outermost over a tile's pixels (a tap's rows re-read from L1, the pixels' "
             "sums kept in L1); 2: per pixel its taps, the sums in registers",
             {1}},
            {"axpy_row_padding", {1, 2}, 1,
             "channel axpys: 1: the re-laid-out bank's channels padded to a multiple of 48, so that "
             "rows a few apart fall on different 4 KiB offsets and L1 sets; 2: unpadded",
             {1}},
            {"axpy_tile_vectors", {0, 1, 2, 4}, 0,
             "channel axpys: pixel vectors per tile, whose pixels re-read a tap's rows from L1 before the next "
             "tap's; 0: the target's choice (2 on AVX-512, else 4)",
             {1}},
        };
        for (const KnobSpec &k : pixel_tile_knobs_cpu()) all.push_back(k);
        all.push_back({"channel_vectors", {0, 2, 4, 8}, 0,
                       "input-channel vectors per register tile, each a contiguous run of a gathered weight row "
                       "times a broadcast dy, for every batch (0: batch vectors; dot_channels under 4 samples)",
                       {0}});
        all.push_back({"row_vectors", {0, 1}, 0,
                       "shared routing: the output vectorised along grid rows, each tap's weights gathered once "
                       "per row for every sample (0: pixel tiles over channels x batch)",
                       {0}});
        return all;
    }();
    return knobs;
}

const std::vector<KnobSpec> &forward_knobs_cpu() {
    static const std::vector<KnobSpec> knobs = [] {
        // The formulation first: the tuner's descent goes through the knobs in this order.
        std::vector<KnobSpec> all = {
            {"formulation", {0, 1}, 0,
             "0: pixel tiles, the batch in the vector lanes; 1: channel dots, the input channels in the lanes "
             "(full vectors whatever the batch)"},
            {"dot_batch", {1, 2, 4, 8}, 0,
             "channel dots: samples of the widest register tile (0: registers / 4, 8 on AVX-512)", {1}},
            {"dot_slots", {1, 2, 3, 4, 6}, 0,
             "channel dots: output channels of the widest register tile (0: 3/4 of the registers / dot_batch, at most 4 for "
             "tiles of one or two samples)",
             {1}},

        };
        for (const KnobSpec &k : pixel_tile_knobs_cpu()) all.push_back(k);
        all.push_back({"dot_partials", {0, 1}, 0,
                       "1: each dot product keeps a vector of partial sums over strided input channels for the "
                       "whole reduction and sums its lanes once (for kernels that only see batches under 4)",
                       {0}});
        all.push_back({"row_vectors", {0, 1}, 0,
                       "shared routing: the output vectorised along grid rows, each tap's weights gathered once "
                       "per row for every sample, the input read as NCHW lays it out (0: pixel tiles over channels "
                       "x batch)",
                       {0}});
        return all;
    }();
    return knobs;
}

const std::vector<KnobSpec> &pixel_tile_knobs_gpu() {
    static const std::vector<KnobSpec> knobs = {
        {"accumulators", {1, 2, 4, 8}, 4, "batch samples per thread"},
        {"row_tile", {1, 2, 4, 8}, 4, "grid rows per thread block (32 pixels wide)"},
    };
    return knobs;
}

const std::vector<KnobSpec> &vector_width_knob() {
    static const std::vector<KnobSpec> knobs = {
        {"vector_width", {4, 8, 16, 32}, 0, "lanes along the grid's width (0: the target's natural width)"},
    };
    return knobs;
}

// Formulation knobs, read by the generator: which radix passes first test blocks of keys and count
// only the blocks with a key in the bucket, and how many keys a block holds.
const std::vector<KnobSpec> &quantile_formulation_knobs() {
    static const std::vector<KnobSpec> knobs = {
        {"skip_from", {1, 2}, 2, "first radix pass that counts only the blocks of keys holding one in the bucket"},
        {"skip_block", {16, 32, 64}, 32, "keys per tested block"},
        {"first_digit_bits", {11, 12, 13, 14}, 0,
         "bits of the first radix pass's digit, which decides how many keys the later passes count (0: 13 on CPUs, "
         "11 on GPUs, whose histogram sits in shared memory)"},
    };
    return knobs;
}

const std::vector<KnobSpec> &quantile_knobs_cpu() {
    static const std::vector<KnobSpec> knobs = [] {
        std::vector<KnobSpec> all = {
            {"histogram_copies", {1, 2, 4, 8}, 2,
             "interleaved partial histograms in the first radix pass (break chains of increments to one bin)"},
        };
        for (const KnobSpec &k : quantile_formulation_knobs()) all.push_back(k);
        return all;
    }();
    return knobs;
}

const std::vector<KnobSpec> &no_knobs() {
    static const std::vector<KnobSpec> knobs;
    return knobs;
}

[[noreturn]] void knob_error(const std::string &message) {
    throw CompileError("smoe: " + message);
}

// Targets that produce the same instructions: features that only change how the code is linked,
// called or checked (a multi-target build adds no_runtime and user_context) are not compared.
bool same_target(Target a, Target b) {
    for (Target::Feature f : {Target::UserContext, Target::NoRuntime, Target::NoAsserts, Target::NoBoundsQuery,
                              Target::Profile, Target::ProfileByTimer, Target::Debug}) {
        a = a.without_feature(f);
        b = b.without_feature(f);
    }
    return a == b;
}

}  // namespace

const std::vector<std::string> &tunable_ops() {
    static const std::vector<std::string> ops = {"forward", "backward_data", "backward_weight", "route_topk",
                                                 "error_quantile", "rc_loss", "gate_gradient"};
    return ops;
}

const std::vector<KnobSpec> &knob_space(const std::string &op, bool gpu) {
    if (op == "forward") return gpu ? pixel_tile_knobs_gpu() : forward_knobs_cpu();
    if (op == "backward_data") return gpu ? pixel_tile_knobs_gpu() : backward_data_knobs_cpu();
    if (op == "backward_weight") {
        static const std::vector<KnobSpec> cpu = {
            {"formulation", {0, 1, 2}, 0,
             "shared routing: 0: channel chunks per tap; 1: tap tiles, a row of taps of a block of "
             "channel_vectors channel vectors in registers, blocks outermost in a band; 2: slot sweeps, "
             "pixel-major in blocks of sample_block samples, per pixel, tap and block the receptive field's "
             "channel_vectors channel vectors held while the pixel's slots add to their rows"},
            {"channel_vectors", {1, 2, 4, 8, 16}, 0,
             "channel vectors summed over the batch in registers (0: half the vector registers; tap tiles, "
             "slot sweeps and expert groups: 4; dense rows: registers / 8)"},
            {"sample_block", {4, 8, 16}, 0,
             "slot sweeps: samples per block, the batch padded with zeros to whole blocks (0: 8)",
             {2}},
            {"tap_order", {0, 1}, 1,
             "slot sweeps: 1: taps outermost in a band's channel block, so that one tap's rows are what the "
             "slots revisit; 0: per pixel its taps",
             {2}},
            {"row_padding", {0, 1, 2}, 0,
             "slot sweeps: 1: the band's partial sum stores its channels padded to a multiple of 48, so that the "
             "rows of experts a few apart fall on different 4 KiB offsets and L1 sets; 2: unpadded; 0: the "
             "target's choice (padded for float32 on AVX-512)",
             {2}},
            {"sum_into_rows", {0, 1, 2}, 0,
             "slot sweeps: 1: each sample's product added straight to its expert's row (the row loaded, one "
             "FMA per sample, stored); 2: the block's samples summed in registers, then added to the row; "
             "0: the target's choice (1 on AVX-512, else 2; bf16 pairs always 2)",
             {2}},
            {"band_lanes", {0, 1}, 0,
             "shared routing: bands of rows in vector lanes, one task per (kh, kw), for few channels "
             "(0: channel vectors, one task per band)",
             {0}},
        };
        return gpu ? no_knobs() : cpu;
    }
    if (op == "route_topk") {
        static const std::vector<KnobSpec> cpu = {
            {"pixel_tile", {0, 1}, 1,
             "1: keys and ranks per vector of pixels (in L1), scatter vectorised; 0: per grid row"},
            {"pixel_vector", {4, 8, 16, 32}, 32, "pixels per vector (0: the target's natural width)"},
            {"rows_per_task", {1, 2, 4, 8, 16, 32}, 8, "grid rows per parallel task of the score gather"},
            {"count_chains", {1, 2, 4, 8}, 4,
             "select_first: independent running counts per pass over the experts (the experts split among them)"},
        };
        static const std::vector<KnobSpec> cuda = {
            {"pixel_vector", {32, 64, 128, 256}, 32, "threads per block row"},
        };
        return gpu ? cuda : cpu;
    }
    if (op == "error_quantile") return gpu ? quantile_formulation_knobs() : quantile_knobs_cpu();
    if (op == "rc_loss" || op == "gate_gradient") return gpu ? no_knobs() : vector_width_knob();
    knob_error("no schedule knobs are known for op '" + op + "'");
}

Knobs::Knobs(const std::string &op, const std::string &text, const std::string &knobs_target, const Target &target) {
    const std::vector<KnobSpec> &space = knob_space(op, target.has_gpu_feature());
    for (const KnobSpec &spec : space) values_[spec.name] = spec.default_value;
    if (text.empty() || (!knobs_target.empty() && !same_target(Target(knobs_target), target))) return;
    // A store the build read may still name a knob or value this version does not know: that knob
    // keeps its default, with a warning in the build's output.
    auto ignore = [&](const std::string &why) {
        std::cerr << "smoe: warning: " << why << "; " << op << " keeps that knob's default\n";
    };
    std::stringstream items(text);
    std::string item;
    while (std::getline(items, item, ',')) {
        const size_t eq = item.find(':');
        const std::string name = item.substr(0, eq);
        auto spec = std::find_if(space.begin(), space.end(), [&](const KnobSpec &s) { return s.name == name; });
        if (eq == std::string::npos || spec == space.end()) {
            ignore("'" + item + "' is not a knob of " + op);
            continue;
        }
        int value = 0;
        try {
            size_t used = 0;
            value = std::stoi(item.substr(eq + 1), &used);
            if (used != item.size() - eq - 1) throw std::invalid_argument(item);
        } catch (const std::exception &) {
            ignore("knob " + name + " of " + op + " needs an integer, got '" + item + "'");
            continue;
        }
        if (value != 0 && std::find(spec->values.begin(), spec->values.end(), value) == spec->values.end()) {
            ignore("knob " + name + "=" + std::to_string(value) + " is outside its range");
            continue;
        }
        values_[name] = value;
    }
}

int Knobs::operator[](const std::string &name) const {
    auto it = values_.find(name);
    if (it == values_.end()) knob_error("a schedule asked for the unknown knob " + name);
    return it->second;
}

bool Knobs::on(const std::string &name, bool target_choice) const {
    const int value = (*this)[name];
    return value == 0 ? target_choice : value == 1;
}

int vector_registers(const Halide::Target &target) { return target.has_feature(Halide::Target::AVX512) ? 32 : 16; }

std::string format_knobs(const std::map<std::string, int> &knobs) {
    std::string text;
    for (const auto &[name, value] : knobs) {
        if (!text.empty()) text += ",";
        text += name + ":" + std::to_string(value);
    }
    return text;
}

}  // namespace smoe
