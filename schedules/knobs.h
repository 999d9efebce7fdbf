// Named schedule knobs: every schedule reads its choices (tiles, vector widths, unrolling,
// formulations) from a Knobs value, never from constants buried in the schedule. Each op's knobs,
// their ranges and defaults are listed in knob_space(); the tuner (autotune/) searches them and the
// build passes chosen values to the generators as the `knobs` parameter.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "Halide.h"

namespace smoe {

struct KnobSpec {
    std::string name;
    std::vector<int> values;  // the range the tuner searches, smallest first
    int default_value;        // 0: derived from the target (see `meaning`)
    std::string meaning;
    // The values of the op's `formulation` knob this knob matters for (empty: every formulation);
    // the tuner leaves it alone under the others.
    std::vector<int> formulations = {};
};

// The knobs of an op's schedule on a CPU or a GPU target. Ops: forward, backward_data,
// backward_weight, route_topk, error_quantile, rc_loss, gate_gradient.
const std::vector<KnobSpec> &knob_space(const std::string &op, bool gpu);
const std::vector<std::string> &tunable_ops();

class Knobs {
public:
    // Parses "name:value,name:value" (the generator's `knobs` parameter; GenGen takes no "=" in a value) against the op's space.
    // The values apply only when `knobs_target` is empty or names this target (features compared
    // without user_context, no_runtime and other link or check features), so that one multi-target library can carry the knobs of one target.
    // Unknown names and values outside the range keep the default, with a warning.
    Knobs(const std::string &op, const std::string &text, const std::string &knobs_target,
          const Halide::Target &target);

    // The knob's value: the given one, else its default (0 for target-derived defaults).
    int operator[](const std::string &name) const;

    // A knob of values 0 (the target's choice), 1 (on) and 2 (off): whether it is on.
    bool on(const std::string &name, bool target_choice) const;

private:
    std::map<std::string, int> values_;
};

// The vector registers of a CPU target, 32 with AVX-512, else 16: what the register tiles' target-
// derived defaults are sized from.
int vector_registers(const Halide::Target &target);

// "name:value,..." of a knob map, in name order (the form the `knobs` parameter takes).
std::string format_knobs(const std::map<std::string, int> &knobs);

}  // namespace smoe
