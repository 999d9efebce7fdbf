// What the tuner measures: a layer configuration, and for each op the buffers its generator takes,
// filled like a training step's (random activations, top-E routing, a realistic quantile).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "Halide.h"

namespace smoe::autotune {

struct LayerShape {
    std::string name;  // heat, weatherbench, cifar, or B,C,H,W,NE,E,K[,F] as given
    int batch = 0, channels = 0, height = 0, width = 0, experts = 0, selected = 0, kernel = 0;
    int outputs_per_expert = 1;
};

// "heat", "weatherbench", "cifar" (the benchmark layers) or "B,C,H,W,NE,E,K[,F]"; a "b1:" prefix
// takes a named layer at batch 1 (inference). Throws std::invalid_argument with the expectation.
LayerShape parse_layer(const std::string &text);
std::string describe(const LayerShape &shape);

// The run-time class of a call's shape that tuned variants are chosen by (runtime/ computes the
// same): "b1-3" or "b4+" (batch), then "c1-7" or "c8+" (input channels).
std::string shape_class(int batch, int channels);

// The generator of an op, the generator parameters of the variant that is tuned (shared
// routing, unweighted; the knobs then serve every variant), and a value for each of its inputs
// and outputs by name. Scalars are kept as doubles and converted to the argument's type.
struct OpWorkload {
    std::string generator;
    std::map<std::string, std::string> params;
    std::map<std::string, Halide::Buffer<>> buffers;
    std::map<std::string, double> scalars;
};

OpWorkload make_workload(const std::string &op, const LayerShape &shape, const Halide::Target &target);

}  // namespace smoe::autotune
