#include "kernel_registry.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include <mutex>
#include <sstream>

#include "cpu_features.h"
#include "variant_cache.h"
#include "smoe_half_variants.h"
#include "smoe_formulation_variants.h"
#include "smoe_kernels.h"
#include "smoe_tuned_variants.h"

namespace smoe::runtime {
namespace {

// Top-E routing ranks every expert against every other (NE·NE comparisons per pixel), or first
// selects the E best (a count of the NE keys per key bit) and ranks those (E·E): the second where
// it is clearly less work (measured on the CPU: NE = 128, E = 64 is about even).
bool selects_first(int64_t experts, int64_t selected, int key_bits) {
    return experts * experts > 2 * (key_bits * experts + selected * selected);
}
template <auto RankAll, auto SelectFirst>
int route_topk_choice(void *uc, const RouteTopKArgs &a) {
    const int key_bits = a.routing->type.bits == 64 ? 64 : 32;
    const bool select = selects_first(a.routing->dim[2].extent, a.indices->dim[2].extent, key_bits);
    return select ? SelectFirst(uc, a.routing, a.indices, a.values) : RankAll(uc, a.routing, a.indices, a.values);
}

// The routing scores of an unweighted call to a gated kernel: all 1, of the kernel's dtype, over
// the extents of `indices`. One row of W ones (the kernels want a unit stride along W) is repeated
// with stride 0 along the other dimensions. y·1 = y and dŷ·1 = dŷ exactly, so a gated kernel gives
// an unweighted layer the same bits as an unweighted kernel would, for the price of one multiply
// per output or error element; the CPU build compiles the forward and the expert-side gradients
// gated only (cmake/SmoeKernels.cmake, GATED), half the kernels.
class UnitGates {
public:
    UnitGates(const halide_buffer_t &indices, halide_type_t type) {
        const int width = indices.dim[0].extent;
        ones_.resize(static_cast<size_t>(width) * type.bytes());
        for (int i = 0; i < width; ++i) write_one(ones_.data() + static_cast<size_t>(i) * type.bytes(), type);
        for (int d = 0; d < indices.dimensions; ++d) {
            dims_[d] = halide_dimension_t(indices.dim[d].min, indices.dim[d].extent, d == 0 ? 1 : 0);
        }
        buffer_.host = ones_.data();
        buffer_.type = type;
        buffer_.dimensions = indices.dimensions;
        buffer_.dim = dims_.data();
    }
    UnitGates(const UnitGates &) = delete;
    UnitGates &operator=(const UnitGates &) = delete;
    halide_buffer_t *get() { return &buffer_; }

private:
    static void write_one(uint8_t *at, halide_type_t type) {
        if (type.code == halide_type_bfloat) {
            const uint16_t one = 0x3F80;
            std::memcpy(at, &one, sizeof one);
        } else if (type.bits == 16) {
            const uint16_t one = 0x3C00;
            std::memcpy(at, &one, sizeof one);
        } else if (type.bits == 64) {
            const double one = 1.0;
            std::memcpy(at, &one, sizeof one);
        } else {
            const float one = 1.0f;
            std::memcpy(at, &one, sizeof one);
        }
    }
    std::vector<uint8_t> ones_;
    std::array<halide_dimension_t, 4> dims_{};
    halide_buffer_t buffer_{};
};

// Adapters from each op's argument struct to its generated signatures: unweighted, weighted, and
// for the gated ops, an unweighted call to the weighted kernel (unit_gates).
template <auto K>
int forward_unweighted(void *uc, const ForwardArgs &a) {
    return K(uc, a.x, a.weight, a.indices, a.out_per_expert, a.y);
}
template <auto K>
int forward_weighted(void *uc, const ForwardArgs &a) {
    return K(uc, a.x, a.weight, a.indices, a.values, a.out_per_expert, a.y);
}
template <auto K>
int backward_data_unweighted(void *uc, const BackwardDataArgs &a) {
    const DampingArgs &d = a.damping;
    return K(uc, a.grad_y, a.weight, a.indices, a.out_per_expert, d.quantile, d.error_scale, d.damping, a.grad_x);
}
template <auto K>
int backward_data_weighted(void *uc, const BackwardDataArgs &a) {
    const DampingArgs &d = a.damping;
    return K(uc, a.grad_y, a.weight, a.indices, a.values, a.out_per_expert, d.quantile, d.error_scale, d.damping,
             a.grad_x);
}
template <auto K>
int backward_weight_unweighted(void *uc, const BackwardWeightArgs &a) {
    const DampingArgs &d = a.damping;
    return K(uc, a.grad_y, a.x, a.indices, a.out_per_expert, d.quantile, d.error_scale, d.damping, a.grad_weight);
}
template <auto K>
int backward_weight_weighted(void *uc, const BackwardWeightArgs &a) {
    const DampingArgs &d = a.damping;
    return K(uc, a.grad_y, a.x, a.indices, a.values, a.out_per_expert, d.quantile, d.error_scale, d.damping,
             a.grad_weight);
}
// An unweighted call through a gated kernel's weighted adapter, with unit gates of `type`.
template <auto WeightedAdapter, typename Args>
int with_unit_gates(void *uc, const Args &a, halide_type_t type) {
    UnitGates gates(*a.indices, type);
    Args gated = a;
    gated.values = gates.get();
    return WeightedAdapter(uc, gated);
}
template <auto K>
int forward_unit_gates(void *uc, const ForwardArgs &a) {
    return with_unit_gates<forward_weighted<K>>(uc, a, a.x->type);
}
template <auto K>
int backward_data_unit_gates(void *uc, const BackwardDataArgs &a) {
    return with_unit_gates<backward_data_weighted<K>>(uc, a, a.grad_y->type);
}
template <auto K>
int backward_weight_unit_gates(void *uc, const BackwardWeightArgs &a) {
    return with_unit_gates<backward_weight_weighted<K>>(uc, a, a.grad_y->type);
}
template <auto K>
int gate_gradient_unweighted(void *uc, const GateGradientArgs &a) {
    return K(uc, a.grad_y, a.indices, a.out_per_expert, a.grad_routing);
}
template <auto K>
int gate_gradient_weighted(void *uc, const GateGradientArgs &a) {
    return K(uc, a.grad_y, a.response, a.indices, a.out_per_expert, a.grad_routing);
}

template <auto K>
int rc_loss_unweighted(void *uc, const RCLossArgs &a) {
    return K(uc, a.grad_y, a.indices, a.routing, a.quantile, a.out_per_expert, a.error_scale, a.gradient_scale,
             a.grad_routing, a.loss);
}
template <auto K>
int rc_loss_weighted(void *uc, const RCLossArgs &a) {
    return K(uc, a.grad_y, a.response, a.indices, a.routing, a.quantile, a.out_per_expert, a.error_scale,
             a.gradient_scale, a.grad_routing, a.loss);
}
template <auto K>
int error_quantile_signal(void *uc, const ErrorQuantileArgs &a) {
    return K(uc, a.signal, a.q, a.error_scale, a.quantile);
}
template <auto K>
int error_quantile_product(void *uc, const ErrorQuantileArgs &a) {
    return K(uc, a.signal, a.response, a.q, a.error_scale, a.quantile);
}

// [shared_routing][weighted] for one op, dtype and device.
template <typename Args>
using VariantTable = Kernel<Args>[2][2];

#define SMOE_VARIANT_TABLE(op, suffix)                                                         \
    {                                                                                          \
        {op##_unweighted<smoe_##op##_per_sample_unweighted_##suffix>,                          \
         op##_weighted<smoe_##op##_per_sample_weighted_##suffix>},                             \
        {op##_unweighted<smoe_##op##_shared_unweighted_##suffix>,                              \
         op##_weighted<smoe_##op##_shared_weighted_##suffix>},                                 \
    }
// The gated ops on the CPU: the weighted kernels serve both gatings.
#define SMOE_GATED_TABLE(op, suffix)                                                           \
    {                                                                                          \
        {op##_unit_gates<smoe_##op##_per_sample_weighted_##suffix>,                            \
         op##_weighted<smoe_##op##_per_sample_weighted_##suffix>},                             \
        {op##_unit_gates<smoe_##op##_shared_weighted_##suffix>,                                \
         op##_weighted<smoe_##op##_shared_weighted_##suffix>},                                 \
    }

// Every op's tables: CPU float32, and float64, float16 and bfloat16 when SMOE_CPU_DTYPES has them;
// CUDA float32, float16 and bfloat16 when built.
template <typename Args>
struct Tables;
// CPU_TABLE: SMOE_GATED_TABLE for the gated ops, else SMOE_VARIANT_TABLE.
#define SMOE_TABLES(Op, op, CPU_TABLE)                                                         \
    template <>                                                                                \
    struct Tables<Op##Args> {                                                                  \
        static constexpr VariantTable<Op##Args> f32 = CPU_TABLE(op, f32);                      \
        SMOE_F64_TABLE(Op, op, CPU_TABLE)                                                      \
        SMOE_F16_TABLE(Op, op, CPU_TABLE)                                                      \
        SMOE_BF16_TABLE(Op, op, CPU_TABLE)                                                     \
        SMOE_CUDA_TABLES(Op, op)                                                               \
    };

#ifdef SMOE_WITH_CPU_FLOAT64
#define SMOE_F64_TABLE(Op, op, CPU_TABLE) static constexpr VariantTable<Op##Args> f64 = CPU_TABLE(op, f64);
#define SMOE_IF_F64(...) __VA_ARGS__
#else
#define SMOE_F64_TABLE(Op, op, CPU_TABLE)
#define SMOE_IF_F64(...)
#endif
#ifdef SMOE_WITH_CPU_FLOAT16
#define SMOE_F16_TABLE(Op, op, CPU_TABLE) static constexpr VariantTable<Op##Args> f16 = CPU_TABLE(op, f16);
#define SMOE_IF_F16(...) __VA_ARGS__
#else
#define SMOE_F16_TABLE(Op, op, CPU_TABLE)
#define SMOE_IF_F16(...)
#endif
#ifdef SMOE_WITH_CPU_BFLOAT16
#define SMOE_BF16_TABLE(Op, op, CPU_TABLE) static constexpr VariantTable<Op##Args> bf16 = CPU_TABLE(op, bf16);
#define SMOE_IF_BF16(...) __VA_ARGS__
#else
#define SMOE_BF16_TABLE(Op, op, CPU_TABLE)
#define SMOE_IF_BF16(...)
#endif

#ifdef SMOE_WITH_CUDA_KERNELS
#define SMOE_CUDA_TABLES(Op, op)                                                               \
    static constexpr VariantTable<Op##Args> f32_cuda = SMOE_VARIANT_TABLE(op, f32_cuda);       \
    static constexpr VariantTable<Op##Args> f16_cuda = SMOE_VARIANT_TABLE(op, f16_cuda);       \
    static constexpr VariantTable<Op##Args> bf16_cuda = SMOE_VARIANT_TABLE(op, bf16_cuda);
#else
#define SMOE_CUDA_TABLES(Op, op)
#endif

SMOE_TABLES(Forward, forward, SMOE_GATED_TABLE)
SMOE_TABLES(BackwardData, backward_data, SMOE_GATED_TABLE)
SMOE_TABLES(BackwardWeight, backward_weight, SMOE_GATED_TABLE)
SMOE_TABLES(GateGradient, gate_gradient, SMOE_VARIANT_TABLE)
SMOE_TABLES(RCLoss, rc_loss, SMOE_VARIANT_TABLE)

// Tuned variants (cmake/SmoeTunedStore.cmake): the ops whose kernels the build may specialise per
// shape class, and how a call's batch and input channels are read from its arguments.
template <typename Args>
struct TunedOp {
    static constexpr bool has_variants = false;
};
// "WxHxCxB"-style extents of a buffer, for cache keys.
std::string extents(const halide_buffer_t *b) {
    std::string text;
    for (int d = 0; d < b->dimensions; ++d) {
        if (d) text += 'x';
        text += std::to_string(b->dim[d].extent);
    }
    return text;
}

// A call's exact layer shape for the measured choice: the input, the bank (NE·F rows) and the
// output side (E·F channels), and F, so that layers differing only in E or F are measured apart.
std::string layer_shape(const halide_buffer_t *input, const halide_buffer_t *bank, const halide_buffer_t *output,
                        int out_per_expert) {
    return extents(input) + " " + extents(bank) + " " + extents(output) + " F" + std::to_string(out_per_expert);
}

template <>
struct TunedOp<ForwardArgs> {
    static constexpr bool has_variants = true;
    static constexpr const char *name = "forward";
    static const halide_buffer_t *input(const ForwardArgs &a) { return a.x; }
    static std::string shape(const ForwardArgs &a) { return layer_shape(a.x, a.weight, a.y, a.out_per_expert); }
};
template <>
struct TunedOp<BackwardDataArgs> {
    static constexpr bool has_variants = true;
    static constexpr const char *name = "backward_data";
    static const halide_buffer_t *input(const BackwardDataArgs &a) { return a.grad_x; }
    static std::string shape(const BackwardDataArgs &a) {
        return layer_shape(a.grad_x, a.weight, a.grad_y, a.out_per_expert);
    }
};
template <>
struct TunedOp<BackwardWeightArgs> {
    static constexpr bool has_variants = true;
    static constexpr const char *name = "backward_weight";
    static const halide_buffer_t *input(const BackwardWeightArgs &a) { return a.x; }
    static std::string shape(const BackwardWeightArgs &a) {
        return layer_shape(a.x, a.grad_weight, a.grad_y, a.out_per_expert);
    }
};

// The compiled tuned variants this CPU runs, per op and routing variant, indexed by shape class.
template <typename Args>
using ClassTable = std::array<Kernel<Args>, kShapeClassCount>;

template <typename Args>
const ClassTable<Args> &tuned_table(bool shared_routing, bool weighted) {
    static const auto tables = [] {
        std::array<std::array<ClassTable<Args>, 2>, 2> t{};
        for (const TunedVariantInfo &v : tuned_variants()) {
            if (!v.active || std::string(v.op) != TunedOp<Args>::name) continue;
            // The build lists the best target's variants first.
            Kernel<Args> &slot = t[v.shared_routing][v.weighted][shape_class_index(v.shape_class)];
            if (slot == nullptr) slot = reinterpret_cast<Kernel<Args>>(v.kernel);
        }
        return t;
    }();
    return tables[shared_routing][weighted];
}

std::atomic<bool> tuned_kernels_enabled{true};

// The kernel choice of set_kernel_variant(); "auto" by default.
std::mutex choice_mutex;
std::string choice = "auto";

std::string current_choice() {
    std::lock_guard<std::mutex> lock(choice_mutex);
    return choice;
}

// The entries of a variant list (formulation or bfloat16 variants) for an op and routing variant.
template <typename Args, typename Info>
std::vector<const Info *> variants_of(const std::vector<Info> &all, bool shared_routing, bool weighted) {
    std::vector<const Info *> found;
    for (const Info &v : all) {
        if (std::string(v.op) == TunedOp<Args>::name && v.shared_routing == shared_routing && v.weighted == weighted) {
            found.push_back(&v);
        }
    }
    return found;
}

// The variants of a generated list (formulation or half-precision) whose target this CPU runs.
template <typename Info>
std::vector<Info> runnable(const std::vector<Info> &listed) {
    std::vector<Info> found;
    for (const Info &v : listed) {
        if (cpu_runs_target(v.target)) found.push_back(v);
    }
    return found;
}

// A variant's classes may start with '=': it is measured only for calls of those classes (one that
// is hopeless elsewhere would cost a slow first call there).
constexpr char kOnlyItsClasses = '=';

bool serves_class(const FormulationVariantInfo &v, int shape_class) {
    std::stringstream classes(v.classes[0] == kOnlyItsClasses ? v.classes + 1 : v.classes);
    std::string name;
    while (std::getline(classes, name, ',')) {
        if (shape_class_index(name.c_str()) == shape_class) return true;
    }
    return false;
}

bool competes_in_class(const FormulationVariantInfo &v, int shape_class) {
    return v.classes[0] != kOnlyItsClasses || serves_class(v, shape_class);
}

// The kernel of the variant named `chosen` among `variants`, or nullptr.
template <typename Args, typename Info>
Kernel<Args> named_variant(const std::vector<const Info *> &variants, const std::string &chosen) {
    for (const Info *v : variants) {
        if (chosen == v->name) return reinterpret_cast<Kernel<Args>>(v->kernel);
    }
    return nullptr;
}

// Candidates of a measured choice: the variants' kernels and names after those already listed.
template <typename Args, typename Info>
void add_candidates(std::vector<Kernel<Args>> &kernels, std::vector<std::string> &names,
                    const std::vector<const Info *> &variants) {
    for (const Info *v : variants) {
        kernels.push_back(reinterpret_cast<Kernel<Args>>(v->kernel));
        names.push_back(v->name);
    }
}

// Runs the candidate measured fastest for this call's op, dtype (`dtype_word`: "" for float32,
// " bfloat16"), routing and shape, once per shape on this CPU (runtime/variant_cache.h). Weighted
// and unweighted calls share one choice ("gated"): both run the same gated kernels, so an
// unweighted call's result stays that of a call with scores of one, bit for bit.
template <typename Args, bool Shared>
int run_measured(void *uc, const Args &a, const char *dtype_word, const std::vector<Kernel<Args>> &kernels,
                 const std::vector<std::string> &names) {
    if (kernels.size() == 1) return kernels[0](uc, a);
    const std::string key = std::string(TunedOp<Args>::name) + dtype_word + (Shared ? " shared " : " per_sample ") +
                            "gated " + TunedOp<Args>::shape(a);
    const int chosen = choose_by_measurement(key, names, [&](int i) { return kernels[i](uc, a); });
    return kernels[chosen](uc, a);
}

// With the choice "auto" and measurement on: the regular kernel, the op's formulation variants and
// the active tuned variant of the call's class.
template <typename Args, bool Shared, bool Weighted>
int measured_dispatch(void *uc, const Args &a, const std::vector<const FormulationVariantInfo *> &formulations,
                      Kernel<Args> tuned, int shape_class) {
    std::vector<Kernel<Args>> kernels = {Tables<Args>::f32[Shared][Weighted]};
    std::vector<std::string> names = {"regular"};
    std::vector<const FormulationVariantInfo *> competing;
    for (const FormulationVariantInfo *v : formulations) {
        if (competes_in_class(*v, shape_class)) competing.push_back(v);
    }
    add_candidates(kernels, names, competing);
    if (tuned != nullptr) {
        for (const TunedVariantInfo &v : tuned_variants()) {
            if (reinterpret_cast<Kernel<Args>>(v.kernel) == tuned && shape_class_index(v.shape_class) == shape_class) {
                kernels.push_back(tuned);
                names.push_back(std::string("tuned:") + v.shape_class + ":" + v.knobs + "@" + v.target);
                break;
            }
        }
    }
    return run_measured<Args, Shared>(uc, a, "", kernels, names);
}

// CPU float32 calls of an op with variants (README "Choosing the kernels").
template <typename Args, bool Shared, bool Weighted>
int variant_dispatch(void *uc, const Args &a) {
    const Kernel<Args> regular = Tables<Args>::f32[Shared][Weighted];
    static const std::vector<const FormulationVariantInfo *> formulations =
        variants_of<Args>(formulation_variants(), Shared, Weighted);
    const halide_buffer_t *in = TunedOp<Args>::input(a);
    const int shape_class = shape_class_index(in->dim[3].extent, in->dim[2].extent);
    const Kernel<Args> tuned =
        tuned_kernels_enabled.load(std::memory_order_relaxed) ? tuned_table<Args>(Shared, Weighted)[shape_class] : nullptr;
    const std::string chosen = current_choice();
    if (chosen == "regular") return regular(uc, a);
    if (chosen == "tuned") return (tuned != nullptr ? tuned : regular)(uc, a);
    if (chosen != "auto") {
        const Kernel<Args> named = named_variant<Args>(formulations, chosen);
        return (named != nullptr ? named : regular)(uc, a);
    }
    if (kernel_cache_path()) return measured_dispatch<Args, Shared, Weighted>(uc, a, formulations, tuned, shape_class);
    if (tuned != nullptr) return tuned(uc, a);
    for (const FormulationVariantInfo *v : formulations) {
        if (serves_class(*v, shape_class)) return reinterpret_cast<Kernel<Args>>(v->kernel)(uc, a);
    }
    return regular(uc, a);
}

// The half-precision dtypes whose ops have variants: the regular kernels' table, the variant list
// and the word the measured choice files them under.
#ifdef SMOE_WITH_CPU_BFLOAT16
struct BFloat16Kernels {
    template <typename Args>
    static const VariantTable<Args> &table() { return Tables<Args>::bf16; }
    static const std::vector<HalfVariantInfo> &variants() { return bf16_variants(); }
    static constexpr const char *word = " bfloat16";
};
#endif
#ifdef SMOE_WITH_CPU_FLOAT16
struct Float16Kernels {
    template <typename Args>
    static const VariantTable<Args> &table() { return Tables<Args>::f16; }
    static const std::vector<HalfVariantInfo> &variants() { return f16_variants(); }
    static constexpr const char *word = " float16";
};
#endif

// bfloat16 and float16 CPU calls of an op with variants: as for float32 (variant_dispatch), the
// choice "regular" or a variant's name forces that kernel, and "auto" measures them per shape when
// measurement is on. With measurement off, "auto" takes the op's first variant of the dtype this
// CPU runs (bfloat16: amx_tiles where the CPU has AMX; else the forward's channel dots, whose
// float32 FMAs outran the bf16 dot-product instruction on an Intel Xeon with AVX512_BF16, the
// channel axpys and the slot sweeps); layers of fewer than 8 input channels keep the regular
// kernels.
template <typename Dtype, typename Args, bool Shared, bool Weighted>
int half_dispatch(void *uc, const Args &a) {
    const Kernel<Args> regular = Dtype::template table<Args>()[Shared][Weighted];
    static const std::vector<const HalfVariantInfo *> variants =
        variants_of<Args>(Dtype::variants(), Shared, Weighted);
    const std::string chosen = current_choice();
    if (variants.empty() || chosen == "regular") return regular(uc, a);
    if (chosen != "auto" && chosen != "tuned") {
        const Kernel<Args> named = named_variant<Args>(variants, chosen);
        return (named != nullptr ? named : regular)(uc, a);
    }
    if (TunedOp<Args>::input(a)->dim[2].extent < 8) return regular(uc, a);
    if (!kernel_cache_path()) return reinterpret_cast<Kernel<Args>>(variants[0]->kernel)(uc, a);
    std::vector<Kernel<Args>> kernels = {regular};
    std::vector<std::string> names = {"regular"};
    add_candidates(kernels, names, variants);
    return run_measured<Args, Shared>(uc, a, Dtype::word, kernels, names);
}

template <typename Dtype, typename Args>
Kernel<Args> half_dispatch_of(RoutingVariant v) {
    static constexpr VariantTable<Args> dispatch = {
        {half_dispatch<Dtype, Args, false, false>, half_dispatch<Dtype, Args, false, true>},
        {half_dispatch<Dtype, Args, true, false>, half_dispatch<Dtype, Args, true, true>},
    };
    return dispatch[v.shared_routing][v.weighted];
}

template <typename Args>
Kernel<Args> with_variants(const VariantTable<Args> *table, RoutingVariant v) {
    if constexpr (TunedOp<Args>::has_variants) {
#ifdef SMOE_WITH_CPU_BFLOAT16
        if (table == &Tables<Args>::bf16) return half_dispatch_of<BFloat16Kernels, Args>(v);
#endif
#ifdef SMOE_WITH_CPU_FLOAT16
        if (table == &Tables<Args>::f16) return half_dispatch_of<Float16Kernels, Args>(v);
#endif
        if (table == &Tables<Args>::f32) {
            static constexpr VariantTable<Args> dispatch = {
                {variant_dispatch<Args, false, false>, variant_dispatch<Args, false, true>},
                {variant_dispatch<Args, true, false>, variant_dispatch<Args, true, true>},
            };
            return dispatch[v.shared_routing][v.weighted];
        }
    }
    return (*table)[v.shared_routing][v.weighted];
}

}  // namespace

// The variant lists name gated kernels (cmake/SmoeKernels.cmake): each is listed for both gatings,
// weighted calls through op_weighted and unweighted ones through op_unit_gates.
const std::vector<TunedVariantInfo> &tuned_variants() {
#define SMOE_TUNED_VARIANT_GATING(op, shared, weighted, adapter, shape_class, knobs, target, cpu, fn) \
    {#op, shared, weighted, shape_class, knobs, target, cpu, reinterpret_cast<const void *>(&op##_##adapter<fn>), \
     cpu_runs_target(target) && cpu_matches(cpu)}
#define SMOE_TUNED_VARIANT_ENTRY(op, shared, shape_class, knobs, target, cpu, fn)                       \
    SMOE_TUNED_VARIANT_GATING(op, shared, false, unit_gates, shape_class, knobs, target, cpu, fn),      \
        SMOE_TUNED_VARIANT_GATING(op, shared, true, weighted, shape_class, knobs, target, cpu, fn),
    static const std::vector<TunedVariantInfo> variants = {SMOE_TUNED_VARIANT_LIST(SMOE_TUNED_VARIANT_ENTRY)};
#undef SMOE_TUNED_VARIANT_ENTRY
#undef SMOE_TUNED_VARIANT_GATING
    return variants;
}

// The half-precision variants this CPU runs, from a generated list of gated kernels.
#define SMOE_HALF_VARIANT_ENTRY(op, shared, name, target, fn)                                        \
    {#op, shared, false, name, target, reinterpret_cast<const void *>(&op##_unit_gates<fn>)},          \
        {#op, shared, true, name, target, reinterpret_cast<const void *>(&op##_weighted<fn>)},
const std::vector<HalfVariantInfo> &bf16_variants() {
    static const std::vector<HalfVariantInfo> variants =
        runnable<HalfVariantInfo>({SMOE_BF16_VARIANT_LIST(SMOE_HALF_VARIANT_ENTRY)});
    return variants;
}

const std::vector<HalfVariantInfo> &f16_variants() {
    static const std::vector<HalfVariantInfo> variants =
        runnable<HalfVariantInfo>({SMOE_F16_VARIANT_LIST(SMOE_HALF_VARIANT_ENTRY)});
    return variants;
}
#undef SMOE_HALF_VARIANT_ENTRY

void set_tuned_kernels_enabled(bool enabled) {
    tuned_kernels_enabled.store(enabled);
}

const std::vector<FormulationVariantInfo> &formulation_variants() {
#define SMOE_FORMULATION_VARIANT_ENTRY(op, shared, name, params, classes, target, fn)                        \
    {#op, shared, false, name, params, classes, target, reinterpret_cast<const void *>(&op##_unit_gates<fn>)}, \
        {#op, shared, true, name, params, classes, target, reinterpret_cast<const void *>(&op##_weighted<fn>)},
    // Built for AVX2-or-better targets (some for AVX-512 only): on an older CPU none is listed.
    static const std::vector<FormulationVariantInfo> variants =
        runnable<FormulationVariantInfo>({SMOE_FORMULATION_VARIANT_LIST(SMOE_FORMULATION_VARIANT_ENTRY)});
#undef SMOE_FORMULATION_VARIANT_ENTRY
    return variants;
}

void set_kernel_variant(const std::string &wanted) {
    std::string names = "auto, regular, tuned";
    bool known = wanted == "auto" || wanted == "regular" || wanted == "tuned";
    auto add_names = [&](const auto &variants) {
        for (const auto &v : variants) {
            if (names.find(v.name) == std::string::npos) names += std::string(", ") + v.name;
            known = known || wanted == v.name;
        }
    };
    add_names(formulation_variants());
    add_names(bf16_variants());
    add_names(f16_variants());
    TORCH_CHECK(known, "set_kernel_variant: '", wanted, "' is not a kernel choice of this build (", names, ")");
    std::lock_guard<std::mutex> lock(choice_mutex);
    choice = wanted;
}

std::string kernel_variant() {
    return current_choice();
}

// Returns `kernels(suffix)` for the kernel-name suffix (f32, f16_cuda, ...) of the dtype and device,
// or nullptr when this build has none.
#define SMOE_FOR_DTYPE_AND_DEVICE(dtype, device, kernels)                                      \
    do {                                                                                       \
        if (device == c10::DeviceType::CPU) {                                                  \
            if (dtype == c10::kFloat) return kernels(f32);                                     \
            SMOE_IF_F64(if (dtype == c10::kDouble) return kernels(f64);)                       \
            SMOE_IF_F16(if (dtype == c10::kHalf) return kernels(f16);)                         \
            SMOE_IF_BF16(if (dtype == c10::kBFloat16) return kernels(bf16);)                   \
        }                                                                                      \
        SMOE_FOR_CUDA_DTYPE(dtype, device, kernels)                                            \
        return nullptr;                                                                        \
    } while (false)
#ifdef SMOE_WITH_CUDA_KERNELS
#define SMOE_FOR_CUDA_DTYPE(dtype, device, kernels)                                            \
    if (device == c10::DeviceType::CUDA) {                                                     \
        if (dtype == c10::kFloat) return kernels(f32_cuda);                                    \
        if (dtype == c10::kHalf) return kernels(f16_cuda);                                     \
        if (dtype == c10::kBFloat16) return kernels(bf16_cuda);                                \
    }
#else
#define SMOE_FOR_CUDA_DTYPE(dtype, device, kernels)
#endif

#ifdef SMOE_WITH_CUDA_KERNELS
// CUDA ranks every expert: the selection first is scheduled for CPUs only.
constexpr auto &smoe_route_topk_select_f32_cuda = smoe_route_topk_f32_cuda;
constexpr auto &smoe_route_topk_select_f16_cuda = smoe_route_topk_f16_cuda;
constexpr auto &smoe_route_topk_select_bf16_cuda = smoe_route_topk_bf16_cuda;
#endif

RouteTopKKernel find_route_topk(c10::ScalarType dtype, c10::DeviceType device) {
#define SMOE_ROUTE_TOPK(suffix) route_topk_choice<smoe_route_topk_##suffix, smoe_route_topk_select_##suffix>
    SMOE_FOR_DTYPE_AND_DEVICE(dtype, device, SMOE_ROUTE_TOPK);
#undef SMOE_ROUTE_TOPK
}

ErrorQuantileKernel find_error_quantile(c10::ScalarType dtype, c10::DeviceType device, bool product) {
#define SMOE_ERROR_QUANTILE(suffix)                                                            \
    (product ? error_quantile_product<smoe_error_quantile_product_##suffix>                     \
             : error_quantile_signal<smoe_error_quantile_signal_##suffix>)
    SMOE_FOR_DTYPE_AND_DEVICE(dtype, device, SMOE_ERROR_QUANTILE);
#undef SMOE_ERROR_QUANTILE
}

template <typename Args>
Kernel<Args> find_kernel(c10::ScalarType dtype, c10::DeviceType device, RoutingVariant v) {
#define SMOE_TABLE(suffix) with_variants(&Tables<Args>::suffix, v)
    SMOE_FOR_DTYPE_AND_DEVICE(dtype, device, SMOE_TABLE);
#undef SMOE_TABLE
}

template Kernel<ForwardArgs> find_kernel<ForwardArgs>(c10::ScalarType, c10::DeviceType, RoutingVariant);
template Kernel<BackwardDataArgs> find_kernel<BackwardDataArgs>(c10::ScalarType, c10::DeviceType, RoutingVariant);
template Kernel<BackwardWeightArgs> find_kernel<BackwardWeightArgs>(c10::ScalarType, c10::DeviceType, RoutingVariant);
template Kernel<GateGradientArgs> find_kernel<GateGradientArgs>(c10::ScalarType, c10::DeviceType, RoutingVariant);
template Kernel<RCLossArgs> find_kernel<RCLossArgs>(c10::ScalarType, c10::DeviceType, RoutingVariant);

}  // namespace smoe::runtime
