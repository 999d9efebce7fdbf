// smoe-train: the paper's location-dependent heat diffusion task (DESIGN.md §5), trained with one
// SMoE layer (NE = 3, E = 1, 3×3 experts, shared tensor routing, unweighted) through the compiled
// ops, with the RC loss and damping unless told otherwise. Prints each epoch's loss and
// "% within 1%", a summary, and writes PNGs of the true and learned region maps and stencils.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include <unistd.h>

#include "heat_data.h"
#include "modules.h"
#include "heat_images.h"

namespace {

using smoe::heat::kTypes;

struct Flags {
    bool rc_loss = true;
    bool damping_on = true;
    double damping = 0.1;
    double quantile = 0.3;
    int64_t epochs = 30;
    int64_t samples = 20000;
    int64_t batch = 32;
    double lr = 3e-3;
    double gate_lr = 1e-2;
    int64_t anneal = 5;
    int threads = 0;
    uint64_t seed = 0;
    std::string out = "heat_output";
    std::string device = "cpu";
};

const char *kUsage =
    "usage: smoe-train [--no-rc] [--no-damping] [--damping D] [--quantile Q] [--epochs N] [--samples N]\n"
    "                  [--batch N] [--lr LR] [--gate-lr LR] [--anneal N] [--threads N] [--seed S] [--out DIR]\n"
    "                  [--device cpu|cuda]\n";

Flags parse(int argc, char **argv) {
    Flags f;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument("smoe-train: " + a + " needs a value\n" + kUsage);
            return argv[++i];
        };
        if (a == "--no-rc") f.rc_loss = false;
        else if (a == "--no-damping") f.damping_on = false;
        else if (a == "--damping") f.damping = std::stod(value());
        else if (a == "--quantile") f.quantile = std::stod(value());
        else if (a == "--epochs") f.epochs = std::stoll(value());
        else if (a == "--samples") f.samples = std::stoll(value());
        else if (a == "--batch") f.batch = std::stoll(value());
        else if (a == "--lr") f.lr = std::stod(value());
        else if (a == "--gate-lr") f.gate_lr = std::stod(value());
        else if (a == "--anneal") f.anneal = std::stoll(value());
        else if (a == "--threads") f.threads = std::stoi(value());
        else if (a == "--seed") f.seed = std::stoull(value());
        else if (a == "--out") f.out = value();
        else if (a == "--device") f.device = value();
        else if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            std::exit(0);
        } else {
            throw std::invalid_argument("smoe-train: unknown argument '" + a + "'\n" + kUsage);
        }
    }
    if (f.epochs < 1 || f.samples < 100 || f.batch < 1 || f.anneal < 0) {
        throw std::invalid_argument(
            "smoe-train: need --epochs >= 1, --samples >= 100 (one run), --batch >= 1 and --anneal >= 0");
    }
    if (f.device != "cpu" && f.device != "cuda") throw std::invalid_argument("smoe-train: --device is cpu or cuda");
    return f;
}

// Shown on a terminal only, so that logs hold the epoch lines alone.
const bool kShowProgress = isatty(fileno(stderr)) != 0;

void progress(int64_t epoch, int64_t epochs, int64_t done, int64_t total) {
    if (!kShowProgress) return;
    constexpr int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    std::fprintf(stderr, "\repoch %3lld/%lld [%s%s] %3d%%", static_cast<long long>(epoch),
                 static_cast<long long>(epochs), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<int>(100 * done / std::max<int64_t>(total, 1)));
}

}  // namespace

int main(int argc, char **argv) try {
    const Flags flags = parse(argc, argv);
    if (flags.threads > 0) at::set_num_threads(flags.threads);
    if (flags.device == "cuda" && !torch::cuda::is_available()) {
        throw std::invalid_argument("smoe-train: --device cuda, but no CUDA device is available");
    }
    const at::Device device(flags.device == "cuda" ? at::kCUDA : at::kCPU);
    at::manual_seed(static_cast<int64_t>(flags.seed));

    // Data: one region map; training runs and 10% more runs held out for the metric.
    smoe::heat::HeatConfig config;
    config.seed = flags.seed;
    const at::Tensor regions = smoe::heat::region_map(config);
    const int64_t runs = flags.samples / config.steps_per_run;
    const int64_t test_runs = std::max<int64_t>(1, runs / 10);
    auto [train_x, train_y] = smoe::heat::simulate(config, regions, runs);
    smoe::heat::HeatConfig test_config = config;
    test_config.seed = flags.seed + 1000003;
    auto [test_x, test_y] = smoe::heat::simulate(test_config, regions, test_runs);
    train_x = train_x.to(device);
    train_y = train_y.to(device);
    test_x = test_x.to(device);
    test_y = test_y.to(device);
    const int64_t n = train_x.size(0), size = config.size;

    smoe::TensorRoutingGate gate(kTypes, 1, size, size);
    smoe::SpatialMoE2dOptions options(1, 3);
    options.rc_loss(flags.rc_loss).quantile(flags.quantile);
    options.damping(flags.damping_on ? std::optional<double>(flags.damping) : std::nullopt);
    smoe::SpatialMoE2d layer(options, gate);
    gate->to(device);
    layer->to(device);
    // Experts and routing scores in their own groups: the scores learn faster (see the README).
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<at::Tensor>{layer->weight},
                        std::make_unique<torch::optim::AdamOptions>(flags.lr));
    groups.emplace_back(std::vector<at::Tensor>{gate->routing},
                        std::make_unique<torch::optim::AdamOptions>(flags.gate_lr));
    torch::optim::Adam optimizer(std::move(groups), torch::optim::AdamOptions(flags.lr));

    std::cout << "heat diffusion: " << n << " training samples (" << runs << " runs), " << test_x.size(0)
              << " held out; SMoE NE=3 E=1 3x3, RC loss " << (flags.rc_loss ? "on" : "off") << ", damping "
              << (flags.damping_on ? (std::ostringstream() << flags.damping).str() : std::string("off")) << ", q=" << flags.quantile
              << ", Adam lr " << flags.lr << " (routing " << flags.gate_lr << ")" << (flags.anneal > 0 ? ", halved in each of the last " + std::to_string(flags.anneal) + " epochs" : "")
              << ", batch "
              << flags.batch << ", " << at::get_num_threads() << " threads, " << flags.device << "\n";

    double final_within = 0, seconds = 0;
    int64_t epochs_to_99 = -1;
    for (int64_t epoch = 1; epoch <= flags.epochs; ++epoch) {
        const auto start = std::chrono::steady_clock::now();
        // Constant learning rates, then halved in each of the last `anneal` epochs (never the first).
        const int64_t anneal = std::min(flags.anneal, flags.epochs - 1);
        const double lr_factor = std::ldexp(1.0, -static_cast<int>(std::max<int64_t>(0, epoch - (flags.epochs - anneal))));
        auto &param_groups = optimizer.param_groups();
        param_groups[0].options().set_lr(flags.lr * lr_factor);
        param_groups[1].options().set_lr(flags.gate_lr * lr_factor);
        const at::Tensor order = at::randperm(n, at::TensorOptions().dtype(at::kLong)).to(device);
        // Sums stay on the device: no host round trip per step.
        at::Tensor loss_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
        at::Tensor rc_sum = loss_sum.clone();
        int64_t batches = 0;
        for (int64_t first = 0; first < n; first += flags.batch) {
            const at::Tensor idx = order.narrow(0, first, std::min(flags.batch, n - first));
            optimizer.zero_grad();
            const at::Tensor loss = at::mse_loss(layer->forward(train_x.index_select(0, idx)), train_y.index_select(0, idx));
            loss.backward();
            optimizer.step();
            loss_sum += loss.detach();
            rc_sum += layer->last_rc_loss();
            ++batches;
            if (batches % 20 == 0) progress(epoch, flags.epochs, first, n);
        }
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        at::Tensor prediction;
        {
            at::NoGradGuard no_grad;
            prediction = layer->forward(test_x);
        }
        final_within = smoe::heat::within_one_percent(prediction, test_y);
        if (epochs_to_99 < 0 && final_within >= 0.99) epochs_to_99 = epoch;
        const double mean_loss = loss_sum.item<double>() / static_cast<double>(batches);
        const double mean_rc = rc_sum.item<double>() / static_cast<double>(batches);
        if (kShowProgress) std::fprintf(stderr, "\r%60s\r", "");
        std::printf("epoch %3lld  loss %.3e  rc_loss %.4f  within 1%%: %7.3f%%  lr %.1e  (%.1f s)\n",
                    static_cast<long long>(epoch), mean_loss, mean_rc,
                    100 * final_within, flags.lr * lr_factor, seconds / static_cast<double>(epoch));
        std::fflush(stdout);
    }

    const std::vector<std::string> images =
        smoe::heat::write_images(flags.out, regions, gate->routing, layer->weight);
    const double agreement = smoe::heat::routing_agreement(regions, gate->routing, layer->weight);
    std::printf("summary: final within 1%%: %.3f%%; epochs to reach 99%%: %s; seconds per epoch: %.2f; "
                "routing agrees with the true map at %.2f%% of points\n",
                100 * final_within, epochs_to_99 > 0 ? std::to_string(epochs_to_99).c_str() : "not reached",
                seconds / static_cast<double>(flags.epochs), 100 * agreement);
    std::printf("images: %s, %s, %s\n", images[0].c_str(), images[1].c_str(), images[2].c_str());
    return 0;
} catch (const std::exception &e) {
    std::cerr << e.what() << "\n";
    return 1;
}
