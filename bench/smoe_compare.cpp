// One-screen comparison, in one process on the same threads, after checking that smoe computes the
// same results: smoe's forward and route_topk, the training step of record (RC loss and damping,
// against the paper's procedure) and the plain training step, against the LibTorch baselines, on the
// paper's layers and the extra shapes of compare_configs() (small batches, an NE/E sweep, the
// ens10-like layer, region routing). The methods are timed in interleaved rounds; every ratio comes
// with its range over the rounds. Exits non-zero when a check fails.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "baselines.h"
#include "cpu_memory.h"
#include "smoe_ops.h"
#include "variant_cache.h"

namespace {

using smoe::bench::kGemmSize;
using smoe::bench::LayerConfig;
using smoe::bench::Method;

constexpr int kWarmupRuns = 3;
constexpr int kTimedRuns = 15;
// Interleaved timing: rounds, and calls per method and round (their median is the round's time).
constexpr int kRounds = 7;
constexpr int kRunsPerRound = 3;
// fp32 summation order differs between smoe and the dense conv (forward) and autograd (gradients).
constexpr double kForwardTolerance = 1e-4;
constexpr double kGradientTolerance = 1e-4;

// Round medians of each method (interleaved_seconds), and what the tables print of them.
struct Timing {
    std::vector<double> rounds;
    double median() const {
        std::vector<double> r = rounds;
        std::sort(r.begin(), r.end());
        return r[r.size() / 2];
    }
};

// "1.85x (1.62-2.03)": the ratio of the medians, and the range of the per-round ratios.
std::string ratio_with_range(const Timing &numerator, const Timing &denominator);

struct ConfigResult {
    std::string name;
    double route_smoe_s, route_torch_s;
    Timing forward_smoe, forward_naive, forward_dense_e;
    double flops;
};

struct TrainingResult {
    std::string name;
    Timing step_smoe, step_naive, step_dense_e;
    int64_t peak_smoe_bytes, peak_naive_bytes, peak_dense_e_bytes;
};

// max|actual − reference| / max|reference|.
double relative_difference(const at::Tensor &actual, const at::Tensor &reference) {
    return (actual - reference).abs().max().item<double>() / reference.abs().max().item<double>();
}

double median_seconds(const std::function<void()> &fn) {
    return smoe::bench::median_seconds(fn, kWarmupRuns, kTimedRuns);
}

void print_config(const LayerConfig &config) {
    std::printf("  %-13s B=%-3lld C=%-4lld %lldx%-4lld NE=%-4lld E=%-4lld K=%lld   ", config.name.c_str(),
                static_cast<long long>(config.batch), static_cast<long long>(config.channels),
                static_cast<long long>(config.height), static_cast<long long>(config.width),
                static_cast<long long>(config.experts), static_cast<long long>(config.selected),
                static_cast<long long>(config.kernel));
}

std::string format(const char *fmt, double value) {
    char text[64];
    std::snprintf(text, sizeof text, fmt, value);
    return text;
}

std::string format_ms(double seconds) {
    const double ms = seconds * 1e3;
    return format(ms >= 100 ? "%.0f" : ms >= 10 ? "%.1f" : ms >= 1 ? "%.2f" : "%.3f", ms);
}

std::string ratio_with_range(const Timing &numerator, const Timing &denominator) {
    double low = INFINITY, high = 0;
    for (size_t i = 0; i < numerator.rounds.size(); ++i) {
        const double r = numerator.rounds[i] / denominator.rounds[i];
        low = std::min(low, r);
        high = std::max(high, r);
    }
    char text[64];
    std::snprintf(text, sizeof text, "%.2fx (%.2f-%.2f)", numerator.median() / denominator.median(), low, high);
    return text;
}

std::vector<Timing> interleaved(const std::vector<std::function<void()>> &methods) {
    std::vector<Timing> timings;
    for (std::vector<double> &rounds : smoe::bench::interleaved_seconds(methods, kRounds, kRunsPerRound)) {
        timings.push_back({std::move(rounds)});
    }
    return timings;
}

std::string format_rate(double flops, double seconds, double gemm_gflops) {
    const double gflops = flops / seconds * 1e-9;
    return format("%.1f", gflops) + format(" (%.0f%%)", 100.0 * gflops / gemm_gflops);
}

// A text table whose header has a row of group labels spanning neighbouring columns.
class Table {
  public:
    struct Column {
        std::string group, name;
        int width;
    };

    explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

    void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

    void print() const {
        std::string groups, names;
        for (size_t i = 0; i < columns_.size();) {
            size_t end = i;
            int span = 0;
            while (end < columns_.size() && columns_[end].group == columns_[i].group) span += columns_[end++].width;
            groups += group_label(columns_[i].group, span, end - i > 1);
            i = end;
        }
        for (const Column &column : columns_) names += cell(column.name, column);
        std::printf("%s\n%s\n", groups.c_str(), names.c_str());
        for (const auto &row : rows_) {
            std::string line;
            for (size_t i = 0; i < columns_.size(); ++i) line += cell(row[i], columns_[i]);
            std::printf("%s\n", line.c_str());
        }
    }

  private:
    // The first column (the config name) is left-aligned, the numbers right-aligned.
    std::string cell(const std::string &text, const Column &column) const {
        const std::string pad(std::max<int>(0, column.width - static_cast<int>(text.size())), ' ');
        return &column == &columns_.front() ? text + pad : pad + text;
    }

    // A group label over `width` characters, drawn as "--label--" when it spans several columns.
    static std::string group_label(const std::string &label, int width, bool spans_several) {
        const int fill = std::max<int>(0, width - 2 - static_cast<int>(label.size()));
        const char fill_char = spans_several ? '-' : ' ';
        return "  " + std::string(fill / 2, fill_char) + label + std::string(fill - fill / 2, fill_char);
    }

    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

struct RoutingCheck {
    bool passed;
    int64_t tie_order_differences;  // slots where at::topk ordered equal scores differently
};

// smoe lists equal scores lower expert first; at::topk leaves their order unspecified. So the
// indices are checked against a stable descending sort (the spec's order), and the values and any
// index difference against at::topk.
RoutingCheck check_routing(const at::Tensor &routing, int64_t E, const at::Tensor &indices,
                           const at::Tensor &values) {
    const auto [stable_indices, stable_values] = smoe::bench::stable_route_topk(routing, E);
    const auto [topk_indices, topk_values] = smoe::bench::naive_route_topk(routing, E);
    const bool passed = at::equal(indices, stable_indices.to(at::kInt)) && at::equal(values, stable_values) &&
                        at::equal(values, topk_values);
    return {passed, indices.ne(topk_indices.to(at::kInt)).sum().item<int64_t>()};
}

std::string describe(const RoutingCheck &check) {
    if (!check.passed) return "route_topk FAILED";
    if (check.tie_order_differences == 0) return "route_topk == at::topk ok";
    return "route_topk ok (== at::topk but " + std::to_string(check.tie_order_differences) +
           " slots of tied scores, lower expert first)";
}

// Checks smoe against the baselines, prints one line about it, and times every method.
ConfigResult run_config(const LayerConfig &config, bool &all_checks_pass) {
    const smoe::bench::LayerInputs in = smoe::bench::make_inputs(config);
    const int64_t E = config.selected, F = config.outputs_per_expert;

    const auto [indices, values] = smoe::route_topk(in.routing, E);
    const RoutingCheck routing_check = check_routing(in.routing, E, indices, values);

    const at::Tensor y = smoe::forward(in.x, in.weight, indices, std::nullopt, F);
    const at::Tensor reference = smoe::bench::naive_forward(in.x, in.weight, indices, F);
    const double relative_diff = relative_difference(y, reference);
    const bool forward_equal = y.sizes() == reference.sizes() && relative_diff <= kForwardTolerance;
    all_checks_pass = all_checks_pass && routing_check.passed && forward_equal;

    print_config(config);
    std::printf("forward max|smoe-naive|/max|naive| = %.1e %s   %s\n", relative_diff, forward_equal ? "ok" : "FAILED",
                describe(routing_check).c_str());

    ConfigResult result;
    result.name = config.name;
    result.flops = config.flops();
    result.route_smoe_s = median_seconds([&] { smoe::route_topk(in.routing, E); });
    result.route_torch_s = median_seconds([&] { smoe::bench::naive_route_topk(in.routing, E); });
    const std::vector<Timing> t = interleaved({
        [&] { smoe::forward(in.x, in.weight, indices, std::nullopt, F); },
        [&] { smoe::bench::naive_forward(in.x, in.weight, indices, F); },
        [&] { smoe::bench::dense_e_forward(in.x, in.dense_weight); }});
    result.forward_smoe = t[0];
    result.forward_naive = t[1];
    result.forward_dense_e = t[2];
    return result;
}

// Checks smoe's gradients against the paper's layer under autograd, prints one line about it, and
// times and measures one training step of every method. The reference routes like smoe (equal
// scores lower expert first), so that at::topk's order of equal scores cannot make them differ.
TrainingResult run_training(const LayerConfig &config, bool &all_checks_pass) {
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));

    const smoe::bench::LayerGradients actual = smoe::bench::train_step(Method::smoe, config, leaves);
    const at::Tensor indices = std::get<0>(smoe::bench::stable_route_topk(leaves.routing.detach(), config.selected));
    const at::Tensor reference_y = smoe::bench::naive_spatial_moe(leaves.x, leaves.weight, leaves.routing, indices,
                                                                  config.outputs_per_expert);
    const smoe::bench::LayerGradients expected = smoe::bench::layer_gradients(Method::naive, reference_y, leaves);
    print_config(config);
    std::printf("gradients max|smoe-naive|/max|naive|:");
    bool gradients_equal = true;
    for (auto [name, a, e] : {std::tuple{"x", actual.x, expected.x},
                              std::tuple{"weight", actual.weight, expected.weight},
                              std::tuple{"routing", actual.routing, expected.routing}}) {
        const bool same_shape = a.sizes() == e.sizes();
        const double relative_diff = same_shape ? relative_difference(a, e) : INFINITY;
        const bool equal = same_shape && relative_diff <= kGradientTolerance;
        gradients_equal = gradients_equal && equal;
        std::printf("  %s %.1e%s", name, relative_diff, equal ? "" : (same_shape ? " FAILED" : " FAILED (shape)"));
    }
    std::printf("   %s\n", gradients_equal ? "ok" : "FAILED");
    all_checks_pass = all_checks_pass && gradients_equal;

    const std::vector<Timing> t = interleaved({[&] { smoe::bench::train_step(Method::smoe, config, leaves); },
                                               [&] { smoe::bench::train_step(Method::naive, config, leaves); },
                                               [&] { smoe::bench::train_step(Method::dense_e, config, leaves); }});
    const auto peak_bytes = [&](Method method) { return smoe::bench::train_step_peak_bytes(method, config, leaves); };
    TrainingResult result;
    result.name = config.name;
    result.step_smoe = t[0];
    result.step_naive = t[1];
    result.step_dense_e = t[2];
    result.peak_smoe_bytes = peak_bytes(Method::smoe);
    result.peak_naive_bytes = peak_bytes(Method::naive);
    result.peak_dense_e_bytes = peak_bytes(Method::dense_e);
    return result;
}

// The training step of record: RC loss and damping. Checks smoe's gradients (x, weight, routing)
// against the paper's two-pass procedure, then times and measures every method.
TrainingResult run_rc_training(const LayerConfig &config, bool &all_checks_pass) {
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));
    const smoe::bench::LayerGradients actual = smoe::bench::rc_train_step(Method::smoe, config, leaves);
    const at::Tensor indices = std::get<0>(smoe::bench::stable_route_topk(leaves.routing.detach(), config.selected));
    const at::Tensor reference_y = smoe::bench::naive_spatial_moe(leaves.x, leaves.weight, leaves.routing, indices,
                                                                  config.outputs_per_expert);
    const smoe::bench::LayerGradients expected =
        smoe::bench::naive_rc_backward(reference_y, config, leaves, false, indices);
    print_config(config);
    std::printf("RC + damping gradients max|smoe-naive|/max|naive|:");
    bool equal_all = true;
    for (auto [name, a, e] : {std::tuple{"x", actual.x, expected.x},
                              std::tuple{"weight", actual.weight, expected.weight},
                              std::tuple{"routing", actual.routing, expected.routing}}) {
        const double d = a.sizes() == e.sizes() ? relative_difference(a, e) : INFINITY;
        const bool equal = d <= kGradientTolerance;
        equal_all = equal_all && equal;
        std::printf("  %s %.1e%s", name, d, equal ? "" : " FAILED");
    }
    std::printf("   %s\n", equal_all ? "ok" : "FAILED");
    all_checks_pass = all_checks_pass && equal_all;

    const std::vector<Timing> t = interleaved({[&] { smoe::bench::rc_train_step(Method::smoe, config, leaves); },
                                               [&] { smoe::bench::rc_train_step(Method::naive, config, leaves); },
                                               [&] { smoe::bench::rc_train_step(Method::dense_e, config, leaves); }});
    TrainingResult result;
    result.name = config.name;
    result.step_smoe = t[0];
    result.step_naive = t[1];
    result.step_dense_e = t[2];
    result.peak_smoe_bytes = smoe::bench::rc_train_step_peak_bytes(Method::smoe, config, leaves);
    result.peak_naive_bytes = smoe::bench::rc_train_step_peak_bytes(Method::naive, config, leaves);
    result.peak_dense_e_bytes = smoe::bench::rc_train_step_peak_bytes(Method::dense_e, config, leaves);
    return result;
}

void print_table(const std::vector<ConfigResult> &results, double gemm_gflops) {
    Table table({{"", "config", 13},
                 {"route_topk ms", "smoe", 9},
                 {"route_topk ms", "at::topk", 10},
                 {"forward ms", "smoe", 9},
                 {"forward ms", "naive", 9},
                 {"forward ms", "dense-E", 9},
                 {"speedup (range)", "naive/smoe", 21},
                 {"vs dense-E (range)", "smoe/dense", 21},
                 {"forward GFLOP/s (% of GEMM)", "smoe", 15},
                 {"forward GFLOP/s (% of GEMM)", "naive", 15},
                 {"forward GFLOP/s (% of GEMM)", "dense-E", 15},
                 {"route/forward", "smoe", 15}});
    for (const ConfigResult &r : results) {
        const double smoe_s = r.forward_smoe.median(), naive_s = r.forward_naive.median(),
                     dense_s = r.forward_dense_e.median();
        table.add_row({r.name, format_ms(r.route_smoe_s), format_ms(r.route_torch_s), format_ms(smoe_s),
                       format_ms(naive_s), format_ms(dense_s), ratio_with_range(r.forward_naive, r.forward_smoe),
                       ratio_with_range(r.forward_smoe, r.forward_dense_e), format_rate(r.flops, smoe_s, gemm_gflops),
                       format_rate(r.flops, naive_s, gemm_gflops), format_rate(r.flops, dense_s, gemm_gflops),
                       format("%.1f%%", 100.0 * r.route_smoe_s / smoe_s)});
    }
    table.print();
}

void print_training_table(const std::vector<TrainingResult> &results) {
    Table table({{"", "config", 13},
                 {"train step ms", "smoe", 9},
                 {"train step ms", "naive", 9},
                 {"train step ms", "dense-E", 9},
                 {"speedup (range)", "naive/smoe", 21},
                 {"vs dense-E (range)", "smoe/dense", 21},
                 {"peak memory MiB", "smoe", 9},
                 {"peak memory MiB", "naive", 9},
                 {"peak memory MiB", "dense-E", 9},
                 {"memory", "smoe/naive", 12}});
    const auto mib = [](int64_t bytes) { return format("%.1f", smoe::bench::to_mib(bytes)); };
    for (const TrainingResult &r : results) {
        const double memory_ratio = static_cast<double>(r.peak_smoe_bytes) / static_cast<double>(r.peak_naive_bytes);
        table.add_row({r.name, format_ms(r.step_smoe.median()), format_ms(r.step_naive.median()),
                       format_ms(r.step_dense_e.median()), ratio_with_range(r.step_naive, r.step_smoe),
                       ratio_with_range(r.step_smoe, r.step_dense_e), mib(r.peak_smoe_bytes),
                       mib(r.peak_naive_bytes), mib(r.peak_dense_e_bytes), format("%.2f", memory_ratio)});
    }
    table.print();
}

// The CPU as /proc/cpuinfo names it, with vendor, family and model, and which kernels it runs.
std::string cpu_description() {
    std::ifstream in("/proc/cpuinfo");
    std::string line, name = "unknown CPU", vendor, family, model;
    auto value = [](const std::string &l) { return l.substr(l.find(':') + 2); };
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0 && name == "unknown CPU") name = value(line);
        if (line.rfind("vendor_id", 0) == 0 && vendor.empty()) vendor = value(line);
        if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value(line);
        if (line.rfind("model\t", 0) == 0 && model.empty()) model = value(line);
    }
    const std::string &target = smoe::runtime::kernel_cpu_target();
    const bool avx512 = target.find("avx512") != std::string::npos, avx2 = target.find("avx2") != std::string::npos;
    const std::string kernels = target == "none" ? "no CPU target of this build runs here"
                                : std::string(avx512 ? "AVX-512" : avx2 ? "AVX2" : "baseline x86-64") + " kernels (" +
                                      target + ")";
    return name + " (" + vendor + " family " + family + " model " + model + "), " + kernels;
}

// The instruction-set limits LibTorch's libraries (oneDNN, MKL) read from the environment, when set:
// with them the baselines run as they would on a CPU with only those instructions.
std::string baseline_isa_limits() {
    std::string limits;
    for (const char *name : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"}) {
        if (const char *value = std::getenv(name)) limits += std::string(limits.empty() ? "" : " ") + name + "=" + value;
    }
    return limits.empty() ? "" : "baselines held to " + limits + "\n";
}

}  // namespace

int main() try {
    // Before any tensor exists, so that every method runs with it and every block is counted.
    smoe::bench::install_cpu_memory_counter();
    // Every method runs on the same threads; smoe sizes Halide's pool from at::get_num_threads().
    at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
    const double gemm_gflops = smoe::bench::measure_gemm_gflops(kGemmSize);
    std::printf("smoe compare on %s\n%sfp32, %d threads, GEMM rate %.1f GFLOP/s (at::mm %lldx%lld); kernel choice: %s "
                "(cache %s)\ntimes are medians of %d interleaved rounds (each the median of %d calls); ratios show "
                "their range over the rounds\n\n",
                cpu_description().c_str(), baseline_isa_limits().c_str(), at::get_num_threads(), gemm_gflops, static_cast<long long>(kGemmSize),
                static_cast<long long>(kGemmSize), smoe::kernel_variant().c_str(),
                smoe::kernel_choice_cache().c_str(), kRounds, kRunsPerRound);

    std::vector<LayerConfig> configs = smoe::bench::layer_configs();
    for (const LayerConfig &c : smoe::bench::compare_configs()) configs.push_back(c);
    std::printf("checks (forward tolerance %.0e):\n", kForwardTolerance);
    bool all_checks_pass = true;
    std::vector<ConfigResult> results;
    for (const LayerConfig &config : configs) results.push_back(run_config(config, all_checks_pass));
    std::printf("\n");
    print_table(results, gemm_gflops);

    std::printf("\ntraining step of record: forward + backward of one layer with the RC loss and damping (q = %.1f, "
                "delta = %.1f);\nsmoe: one backward; naive: the paper's procedure (torch.quantile, dense labels, BCE, "
                "two backwards); dense-E: its plain step\npeak memory: most bytes held at once in LibTorch's CPU "
                "allocator during one step, beyond its inputs\n(not counted: scratch the smoe Halide kernels take "
                "from malloc; see bench/README.md)\n\n",
                smoe::bench::kRCQuantile, smoe::bench::kRCDamping);
    std::printf("checks (gradient tolerance %.0e, against the paper's procedure):\n", kGradientTolerance);
    std::vector<TrainingResult> rc_results;
    for (const LayerConfig &config : configs) rc_results.push_back(run_rc_training(config, all_checks_pass));
    std::printf("\n");
    print_training_table(rc_results);

    std::printf("\nplain training step (straight-through gate, no damping): gradients of x, weight and routing "
                "(dense-E: x and weight)\n\n");
    std::printf("checks (gradient tolerance %.0e, against LibTorch autograd through the paper's layer):\n",
                kGradientTolerance);
    std::vector<TrainingResult> training_results;
    for (const LayerConfig &config : smoe::bench::layer_configs()) {
        training_results.push_back(run_training(config, all_checks_pass));
    }
    std::printf("\n");
    print_training_table(training_results);

    if (!all_checks_pass) {
        std::fprintf(stderr, "\nsmoe compare: a correctness check FAILED (see the checks above)\n");
        return 1;
    }
    return 0;
} catch (const std::exception &error) {
    std::fprintf(stderr, "smoe compare: %s\n", error.what());
    return 2;
}
