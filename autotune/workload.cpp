#include "workload.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

namespace smoe::autotune {

using Halide::Buffer;

namespace {

// The benchmark layers of bench/ (B, C, H, W, NE, E, K).
const std::vector<LayerShape> &named_layers() {
    static const std::vector<LayerShape> layers = {
        {"heat", 32, 1, 64, 64, 3, 1, 3},
        {"weatherbench", 8, 128, 32, 64, 256, 128, 3},
        {"cifar", 32, 64, 32, 32, 128, 64, 3},
    };
    return layers;
}

Buffer<float> normal(std::vector<int> shape, std::mt19937 &rng, float scale = 1.0f) {
    Buffer<float> b(shape);
    std::normal_distribution<float> dist(0.0f, scale);
    b.for_each_value([&](float &v) { v = dist(rng); });
    return b;
}

// Top-E experts of a random routing at each pixel: E distinct experts out of NE, (w, h, j).
Buffer<int32_t> random_selection(const LayerShape &s, std::mt19937 &rng) {
    Buffer<int32_t> indices(s.width, s.height, s.selected);
    std::vector<int> experts(s.experts);
    for (int h = 0; h < s.height; ++h) {
        for (int w = 0; w < s.width; ++w) {
            std::iota(experts.begin(), experts.end(), 0);
            std::shuffle(experts.begin(), experts.end(), rng);
            for (int j = 0; j < s.selected; ++j) indices(w, h, j) = experts[j];
        }
    }
    return indices;
}

}  // namespace

LayerShape parse_layer(const std::string &text) {
    std::string rest = text;
    bool batch_one = false;
    if (rest.rfind("b1:", 0) == 0) {
        batch_one = true;
        rest = rest.substr(3);
    }
    for (const LayerShape &layer : named_layers()) {
        if (layer.name == rest) {
            LayerShape shape = layer;
            if (batch_one) {
                shape.batch = 1;
                shape.name = text;
            }
            return shape;
        }
    }
    std::vector<int> v;
    std::stringstream items(rest);
    std::string item;
    while (std::getline(items, item, ',')) {
        try {
            size_t used = 0;
            v.push_back(std::stoi(item, &used));
            if (used != item.size()) throw std::invalid_argument(item);
        } catch (const std::exception &) {
            v.clear();
            break;
        }
    }
    if (batch_one || (v.size() != 7 && v.size() != 8) || std::any_of(v.begin(), v.end(), [](int x) { return x < 1; })) {
        throw std::invalid_argument("--config must be heat, weatherbench, cifar, b1:<one of those>, or "
                                    "B,C,H,W,NE,E,K[,F] with positive integers; got '" + text + "'");
    }
    LayerShape shape{text, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v.size() == 8 ? v[7] : 1};
    if (shape.selected > shape.experts || shape.kernel % 2 == 0) {
        throw std::invalid_argument("--config needs E <= NE and an odd K; got '" + text + "'");
    }
    return shape;
}

std::string describe(const LayerShape &s) {
    std::ostringstream out;
    out << "B=" << s.batch << " C=" << s.channels << " H=" << s.height << " W=" << s.width << " NE=" << s.experts
        << " E=" << s.selected << " K=" << s.kernel << " F=" << s.outputs_per_expert;
    return out.str();
}

std::string shape_class(int batch, int channels) {
    return std::string(batch < 4 ? "b1-3" : "b4+") + "_" + (channels < 8 ? "c1-7" : "c8+");
}

OpWorkload make_workload(const std::string &op, const LayerShape &s, const Halide::Target &) {
    std::mt19937 rng(1234);
    const int B = s.batch, C = s.channels, H = s.height, W = s.width, K = s.kernel, F = s.outputs_per_expert;
    const int outputs = s.selected * F, rows = s.experts * F;
    const double error_scale = 0.5 * B * outputs * H * W;
    OpWorkload work;
    work.generator = "smoe_" + op;
    work.params = {{"dtype", "float32"}};
    if (op != "route_topk" && op != "error_quantile") {
        work.params["shared_routing"] = "true";
        work.params["weighted"] = "false";
    }
    auto &buf = work.buffers;
    const float weight_scale = 1.0f / std::sqrt(static_cast<float>(C * K * K));
    // A quantile near the 0.7-quantile of |dy|·s for dy ~ N(0, 1): about a third of it misrouted.
    Buffer<float> quantile(B);
    quantile.fill(static_cast<float>(error_scale));
    if (op == "forward") {
        buf["x"] = normal({W, H, C, B}, rng);
        buf["weight"] = normal({K, K, C, rows}, rng, weight_scale);
        buf["indices"] = random_selection(s, rng);
        buf["y"] = Buffer<float>(W, H, outputs, B);
        work.scalars["F"] = F;
    } else if (op == "backward_data" || op == "backward_weight") {
        buf["grad_y"] = normal({W, H, outputs, B}, rng);
        buf[op == "backward_data" ? "weight" : "x"] =
            op == "backward_data" ? normal({K, K, C, rows}, rng, weight_scale) : normal({W, H, C, B}, rng);
        buf["indices"] = random_selection(s, rng);
        buf["quantile"] = quantile;
        if (op == "backward_data") {
            buf["grad_x"] = Buffer<float>(W, H, C, B);
        } else {
            buf["grad_weight"] = Buffer<float>(K, K, C, rows);
        }
        work.scalars = {{"F", F}, {"error_scale", error_scale}, {"damping", 0.1}};
    } else if (op == "route_topk") {
        // Routing shared by the batch: one map.
        buf["routing"] = normal({W, H, s.experts, 1}, rng);
        buf["indices"] = Buffer<int32_t>(W, H, s.selected, 1);
        buf["values"] = Buffer<float>(W, H, s.selected, 1);
    } else if (op == "error_quantile") {
        work.params["product"] = "false";
        buf["grad_y"] = normal({outputs * H * W, B}, rng);
        buf["quantile"] = Buffer<float>(B);
        work.scalars = {{"q", 0.7}, {"scale", error_scale}};
    } else if (op == "rc_loss" || op == "gate_gradient") {
        buf["grad_y"] = normal({W, H, outputs, B}, rng);
        buf["indices"] = random_selection(s, rng);
        buf["grad_routing"] = Buffer<float>(W, H, s.experts);
        work.scalars["F"] = F;
        if (op == "rc_loss") {
            buf["routing"] = normal({W, H, s.experts}, rng);
            buf["quantile"] = quantile;
            buf["loss"] = Buffer<float>::make_scalar();
            work.scalars["scale"] = error_scale;
            work.scalars["gradient_scale"] = 1.0;
        }
    } else {
        throw std::invalid_argument("--ops: unknown op '" + op + "'");
    }
    return work;
}

}  // namespace smoe::autotune
