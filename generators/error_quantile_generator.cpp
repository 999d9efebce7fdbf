// Per-sample error quantile (DESIGN.md §4 "Per-sample quantile"): for every sample b, the exact
// q-quantile of the N values |ε[b]|·s, interpolated like torch.quantile(interpolation='linear'):
// pos = q·(N−1), Q = v[⌊pos⌋] + (pos−⌊pos⌋)·(v[⌈pos⌉] − v[⌊pos⌋]) over the sorted values.
//
// Found by selection, not sorting: non-negative floats order like their bit patterns, so the
// ⌊pos⌋-th smallest key is found digit by digit, most significant first (radix select). Each pass
// counts the keys that share the prefix found so far into a histogram of the next digit and keeps
// the bucket holding the wanted rank. The ⌈pos⌉-th value is then the same key or the smallest
// key above it. Any NaN makes the sample's quantile NaN, as in torch.quantile.
//
// The bucket is found in two levels (running totals of groups of 16 bins, then the bins of one
// group), not by a scan of every bin, which cost as much as the counting on small samples. The
// passes after the first count only keys with the prefix found so far, a small share of them: from
// pass `skip_from` on, blocks of `skip_block` keys are tested together first (vector work) and the
// counting loop visits only the blocks that hold one. How small that share is depends on the first
// digit: 11 bits (the exponent and 3 mantissa bits) leave an eighth of an octave, about 6% of
// normally distributed errors at their 0.7 quantile and a key in most blocks of 32; 13 bits (on
// CPUs, `first_digit_bits`) leave a quarter of that.
#include <algorithm>

#include "Halide.h"

#include "error_quantile_schedule.h"
#include "precision.h"

namespace smoe {
namespace {

using namespace Halide;

class ErrorQuantile : public Generator<ErrorQuantile> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> product{"product", false};  // ε = dy·u (weighted gate), else ε = dy
    GeneratorParam<int> digit_bits{"digit_bits", 11};  // histogram of 2^digit_bits bins per pass
    GeneratorParam<int> skip_block{"skip_block", 16};
    GeneratorParam<int> skip_from{"skip_from", 1};  // keys tested together before a filtered pass counts them

    GeneratorInput<Buffer<>> *grad_y = nullptr;    // (n, b): each sample flattened
    GeneratorInput<Buffer<>> *response = nullptr;  // u, like grad_y; only for the product
    GeneratorInput<double> *q = nullptr;
    GeneratorInput<double> *scale = nullptr;       // s
    GeneratorOutput<Buffer<>> *quantile = nullptr;  // (b)

    void configure() {
        grad_y = add_input<Buffer<>>("grad_y", dtype, 2);
        if (product) response = add_input<Buffer<>>("response", dtype, 2);
        q = add_input<double>("q");
        scale = add_input<double>("scale");
        quantile = add_output<Buffer<>>("quantile", compute_type_of(dtype), 1);
    }

    void generate() {
        const Knobs chosen_knobs("error_quantile", knobs, knobs_target, get_target());
        // Formulation knobs: from which radix pass on, and in blocks of how many keys, keys are
        // tested together before they are counted; the first digit's width (GPUs keep digit_bits:
        // their histogram sits in shared memory).
        const int skip_from = chosen_knobs["skip_from"], skip_block = chosen_knobs["skip_block"];
        constexpr int kCpuFirstDigitBits = 13;
        const int first_digit_bits = chosen_knobs["first_digit_bits"] > 0 ? chosen_knobs["first_digit_bits"]
                                     : get_target().has_gpu_feature()     ? (int)digit_bits
                                                                          : kCpuFirstDigitBits;
        // Half-precision values widen exactly: the quantile is that of the float32 values.
        const Type value_type = compute_type_of(dtype);
        const int bits = value_type.bits();
        const Type key_type = Int(bits);  // |ε|·s >= 0: its bits order like the value, sign bit clear
        Var n("n"), b("b"), d("d");
        Expr count = grad_y->dim(0).extent();

        // |ε|·s in the kernel's type, exactly as the reference rounds it; keys are its bits.
        Func magnitude("magnitude");
        Expr dy = widen((*grad_y)(n, b), value_type);
        Expr signal = product ? dy * widen((*response)(n, b), value_type) : dy;
        magnitude(n, b) = abs(signal) * cast(value_type, *scale);
        Func key("key");
        key(n, b) = reinterpret(key_type, magnitude(n, b));

        // torch.quantile's rank arithmetic: q rounded to the value type, the rank q·(N−1) in
        // float64, the fraction rounded back to the value type.
        Expr last = count - 1;
        Expr pos = cast<double>(cast(value_type, *q)) * cast<double>(last);
        Expr lower_rank = cast<int>(floor(pos));
        Expr upper_rank = cast<int>(ceil(pos));
        Expr fraction = cast(value_type, pos - floor(pos));
        lower_rank = clamp(lower_rank, 0, last);
        upper_rank = clamp(upper_rank, 0, last);

        // Radix select of the key at lower_rank, one digit per pass.
        std::vector<Func> histograms, group_totals, group_running, groups, in_group_running, buckets, block_hits;
        std::vector<int> bin_counts;
        Func rank("rank_in_bucket"), prefix("prefix");
        rank(b) = lower_rank;
        prefix(b) = cast(key_type, 0);
        // The sign bit of |ε|·s is always clear (NaN included): the digits cover the other bits.
        int done = 1;
        while (done < bits) {
            // The first digit first_digit_bits wide, the rest of (nearly) equal width, at most
            // digit_bits: 31 bits -> 13, 9, 9 (11, 10, 10 with a first digit of 11).
            const int passes_left = (bits - done + digit_bits - 1) / digit_bits;
            const int width = histograms.empty() ? std::min(first_digit_bits, bits - done)
                                                 : (bits - done + passes_left - 1) / passes_left;
            const int shift = bits - done - width;
            const int bins = 1 << width;
            const std::string pass = std::to_string(histograms.size());
            Func histogram("histogram" + pass);
            histogram(d, b) = 0;
            // A modulo (not a mask) so that bounds inference sees the digit's range.
            auto digit_of = [&](const Expr &k) { return cast<int>((k >> shift) % cast(key_type, bins)); };
            auto in_bucket = [&](const Expr &k) { return (k >> (shift + width)) == prefix(b); };
            if ((int)histograms.size() < skip_from) {
                RDom r(0, count, "r" + pass);
                if (!histograms.empty()) r.where(in_bucket(key(r, b)));
                histogram(digit_of(key(r, b)), b) += 1;
            } else {
                Expr blocks = (count + skip_block - 1) / skip_block;
                RDom lane(0, skip_block, "lane" + pass);
                Func block_hit("block_hit" + pass);
                block_hit(d, b) = cast<uint8_t>(0);
                block_hit(d, b) = max(block_hit(d, b),
                                      cast<uint8_t>(in_bucket(key(min(d * skip_block + lane, count - 1), b))));
                block_hits.push_back(block_hit);
                RDom r(0, skip_block, 0, blocks, "r" + pass);
                Expr position = r.y * skip_block + r.x;
                // Clamped for bounds inference, which does not see the `where` below.
                Expr n = min(position, count - 1);
                r.where(block_hit(r.y, b) != 0);
                r.where(position < count);
                r.where(in_bucket(key(n, b)));
                histogram(digit_of(key(n, b)), b) += 1;
            }

            // The bucket holding the rank, the first bin whose running count exceeds it: the group
            // first, then the bin inside it.
            const int group_bins = std::min(bins, 16);
            const int group_count = bins / group_bins;
            RDom in_group(0, group_bins, "in_group" + pass);
            Func total("group_total" + pass);
            total(d, b) = 0;
            total(d, b) += histogram(d * group_bins + in_group, b);
            Func running("group_running" + pass);
            running(d, b) = total(d, b);
            if (group_count > 1) {
                RDom scan(1, group_count - 1, "scan" + pass);
                running(scan, b) = running(scan - 1, b) + total(scan, b);
            }
            RDom all_groups(0, group_count, "groups" + pass);
            Func group("group" + pass);
            group(b) = 0;
            group(b) += select(running(all_groups, b) <= rank(b), 1, 0);
            Expr chosen = clamp(group(b), 0, group_count - 1);
            Expr before_group = select(chosen > 0, running(max(chosen - 1, 0), b), 0);
            Func inside("in_group_running" + pass);
            inside(d, b) = before_group + histogram(chosen * group_bins + d, b);
            RDom inside_scan(1, group_bins - 1, "inside_scan" + pass);
            inside(inside_scan, b) = inside(inside_scan - 1, b) + histogram(chosen * group_bins + inside_scan, b);
            Func bucket("bucket" + pass);
            bucket(b) = 0;
            bucket(b) += select(inside(in_group, b) <= rank(b), 1, 0);
            Expr offset = clamp(bucket(b), 0, group_bins - 1);

            Func next_rank("rank" + pass), next_prefix("prefix" + pass);
            Expr below = select(offset > 0, inside(max(offset - 1, 0), b), before_group);
            next_rank(b) = rank(b) - below;
            next_prefix(b) = (prefix(b) << width) | cast(key_type, chosen * group_bins + offset);
            histograms.push_back(histogram);
            bin_counts.push_back(bins);
            group_totals.push_back(total);
            group_running.push_back(running);
            groups.push_back(group);
            in_group_running.push_back(inside);
            buckets.push_back(bucket);
            rank = next_rank;
            prefix = next_prefix;
            done += width;
        }
        Func lower_key = prefix;

        // One last pass: how many keys are <= the lower one, the smallest key above it, and NaNs.
        const Expr infinity_key = bits == 64 ? Internal::make_const(key_type, uint64_t{0x7ff0000000000000}) : Internal::make_const(key_type, uint64_t{0x7f800000});
        const Expr nan_value = reinterpret(value_type, bits == 64 ? Internal::make_const(key_type, uint64_t{0x7ff8000000000000})
                                                                  : Internal::make_const(key_type, uint64_t{0x7fc00000}));
        RDom r(0, count, "r_final");
        Expr k = key(r, b);
        Func not_above("not_above"), next_above("next_above"), nans("nans");
        not_above(b) = 0;
        not_above(b) += select(k <= lower_key(b), 1, 0);
        next_above(b) = key_type.max();
        next_above(b) = min(next_above(b), select(k > lower_key(b), k, key_type.max()));
        nans(b) = 0;
        nans(b) += select(k > infinity_key, 1, 0);

        Expr upper_key = select(upper_rank < not_above(b), lower_key(b), next_above(b));
        Expr low = reinterpret(value_type, lower_key(b));
        Expr high = reinterpret(value_type, upper_key);
        // torch's lerp, operation for operation (no fused multiply-add).
        Expr interpolated = strict_float(select(fraction < Internal::make_const(value_type, 0.5), low + fraction * (high - low),
                                                high - (high - low) * (cast(value_type, 1) - fraction)));
        Func result("result");
        result(b) = select(nans(b) > 0, nan_value, interpolated);
        (*quantile)(b) = result(b);

        ErrorQuantileStages stages{magnitude,        histograms, bin_counts, block_hits,
                                   group_totals,     group_running, groups, in_group_running,
                                   buckets,          {not_above, next_above, nans},
                                   *quantile,        n,          b,          d};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_error_quantile(stages, chosen_knobs, get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::ErrorQuantile, smoe_error_quantile)
