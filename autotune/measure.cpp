#include "measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>

namespace smoe::autotune {

using namespace Halide;
using Internal::AbstractGenerator;

std::string Candidate::label() const {
    if (!autoscheduler.empty()) return autoscheduler;
    std::string text;
    for (const auto &[name, value] : knobs) {
        if (!text.empty()) text += " ";
        text += name + "=" + std::to_string(value);
    }
    return text.empty() ? "default" : text;
}

OpBench::OpBench(const std::string &op, OpWorkload workload, const Target &target, std::string plugin_dir,
                 int threads, int adams2019_beam)
    : op_(op),
      work_(std::move(workload)),
      target_(target),
      plugin_dir_(std::move(plugin_dir)),
      threads_(threads),
      adams2019_beam_(adams2019_beam) {}

namespace {

std::string knob_text(const std::map<std::string, int> &knobs) {
    std::string text;
    for (const auto &[name, value] : knobs) {
        if (value == 0) continue;  // 0 is the target's default
        if (!text.empty()) text += ",";
        text += name + ":" + std::to_string(value);
    }
    return text;
}

// An error's first paragraph, up to 12 lines: Halide's schedule errors say on the lines after the
// first what they are about (the invalid location and the legal ones).
std::string first_paragraph(const std::string &text) {
    size_t end = text.find('\n');
    for (int lines = 1; end != std::string::npos && lines < 12; lines++) {
        const size_t next = text.find('\n', end + 1);
        if (next == end + 1) break;
        end = next;
    }
    return text.substr(0, end);
}

void load_autoscheduler(const std::string &dir, const std::string &name) {
    static std::set<std::string> loaded;
    if (loaded.count(name)) return;
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    load_plugin(dir + "/libautoschedule_" + lower + ".so");
    loaded.insert(name);
}

}  // namespace

Callable OpBench::compile(const Candidate &c, std::vector<const void *> &argv, std::vector<double> &scalars) {
    AutoschedulerParams autoscheduler;
    if (!c.autoscheduler.empty()) {
        load_autoscheduler(plugin_dir_, c.autoscheduler);
        autoscheduler.name = c.autoscheduler;
        autoscheduler.extra = {{"parallelism", std::to_string(threads_)}};
        if (c.autoscheduler == "Adams2019") autoscheduler.extra["beam_size"] = std::to_string(adams2019_beam_);
    }
    std::unique_ptr<AbstractGenerator> gen =
        Internal::GeneratorRegistry::create(work_.generator, GeneratorContext(target_, autoscheduler));
    if (!gen) throw std::runtime_error("no generator named " + work_.generator);
    for (const auto &[name, value] : work_.params) gen->set_generatorparam_value(name, value);
    gen->set_generatorparam_value("knobs", knob_text(c.knobs));
    Pipeline pipeline = gen->build_pipeline();

    // Arguments in the generator's order; estimates (the actual shapes) for the autoschedulers.
    std::vector<Argument> arguments;
    std::vector<halide_buffer_t *> outputs;
    scalars.clear();
    scalars.reserve(gen->arginfos().size());  // never reallocated: argv holds their addresses
    argv.clear();
    argv.push_back(nullptr);  // the JIT user context, filled by the caller
    output_names_.clear();
    for (const AbstractGenerator::ArgInfo &info : gen->arginfos()) {
        if (info.dir == Internal::ArgInfoDirection::Output) {
            Func f = gen->output_func(info.name).at(0);
            Buffer<> &b = work_.buffers.at(info.name);
            Region region;
            for (int d = 0; d < b.dimensions(); ++d) region.push_back({b.dim(d).min(), b.dim(d).extent()});
            if (!c.autoscheduler.empty()) f.set_estimates(region);
            outputs.push_back(b.raw_buffer());
            output_names_.push_back(info.name);
            continue;
        }
        Parameter p = gen->input_parameter(info.name).at(0);
        if (p.is_buffer()) {
            Buffer<> &b = work_.buffers.at(info.name);
            for (int d = 0; d < b.dimensions(); ++d) {
                p.set_min_constraint_estimate(d, b.dim(d).min());
                p.set_extent_constraint_estimate(d, b.dim(d).extent());
            }
            argv.push_back(b.raw_buffer());
        } else {
            const double value = work_.scalars.at(info.name);
            const Type t = p.type();
            p.set_estimate(t.is_float() ? Expr(value) : Expr(static_cast<int32_t>(value)));
            // Scalars are passed by address, in the argument's own type.
            scalars.push_back(0);
            void *slot = &scalars.back();
            if (t == Int(32)) {
                *static_cast<int32_t *>(slot) = static_cast<int32_t>(value);
            } else {
                if (t != Float(64)) throw std::runtime_error("unexpected scalar type of " + info.name);
                *static_cast<double *>(slot) = value;
            }
            argv.push_back(slot);
        }
        arguments.push_back(Argument(p.name(), p.is_buffer() ? Argument::InputBuffer : Argument::InputScalar,
                                     p.type(), p.dimensions(), p.get_argument_estimates()));
    }
    for (halide_buffer_t *b : outputs) argv.push_back(b);
    if (!c.autoscheduler.empty()) pipeline.apply_autoscheduler(target_, autoscheduler);
    return pipeline.compile_to_callable(arguments, target_);
}

bool OpBench::matches_reference(std::string &why) const {
    for (const std::string &name : output_names_) {
        const Buffer<> &got = work_.buffers.at(name);
        const Buffer<> &want = reference_.at(name);
        if (got.type().is_float() || got.type().is_bfloat()) {
            // bfloat16 and float16 results are compared to one unit in the last place at the
            // largest magnitude (2^-7 and 2^-10 of it: two formulations' float32 sums may round to
            // neighbouring values), float32 ones to 1e-3.
            const bool bf16 = got.type().is_bfloat(), f16 = got.type() == Float(16);
            double worst = 0, scale = 1;
            auto compare = [&](const auto &g, const auto &w) {
                w.for_each_element([&](const int *pos) {
                    const double expected = static_cast<double>(w(pos));
                    scale = std::max(scale, std::abs(expected));
                    const double diff = std::abs(static_cast<double>(g(pos)) - expected);
                    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
                });
            };
            if (bf16) {
                compare(Buffer<bfloat16_t>(got), Buffer<bfloat16_t>(want));
            } else if (f16) {
                compare(Buffer<float16_t>(got), Buffer<float16_t>(want));
            } else {
                compare(Buffer<float>(got), Buffer<float>(want));
            }
            if (!(worst <= (bf16 ? 1.0 / 128 : f16 ? 1.0 / 1024 : 1e-3) * scale)) {
                why = "wrong results: " + name + " differs by " + std::to_string(worst);
                return false;
            }
        } else {
            Buffer<int32_t> g = got, w = want;
            bool same = true;
            w.for_each_element([&](const int *pos) { same = same && g(pos) == w(pos); });
            if (!same) {
                why = "wrong results: " + name + " differs";
                return false;
            }
        }
    }
    return true;
}

std::unique_ptr<Compiled> OpBench::prepare(const Candidate &candidate, std::string &error) {
    try {
        auto c = std::make_unique<Compiled>();
        c->callable = compile(candidate, c->argv, c->scalars);
        c->context_ptr = &c->context;
        c->argv[0] = &c->context_ptr;
        for (const std::string &name : output_names_) {
            Buffer<> &b = work_.buffers.at(name);
            std::memset(b.data(), 0, b.size_in_bytes());
        }
        time(*c, 1);  // warm-up: first-touch of scratch memory and the thread pool
        if (reference_.empty()) {
            for (const std::string &name : output_names_) reference_[name] = work_.buffers.at(name).copy();
        } else if (!matches_reference(error)) {
            return nullptr;
        }
        return c;
    } catch (const Halide::Error &e) {
        error = first_paragraph(e.what());
    } catch (const std::exception &e) {
        error = first_paragraph(e.what());
    }
    return nullptr;
}

double OpBench::time(Compiled &c, int runs) {
    std::vector<double> times;
    for (int i = 0; i < runs; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const int status = c.callable.call_argv_fast(c.argv.size(), c.argv.data());
        if (status != 0) throw std::runtime_error("the kernel returned error " + std::to_string(status));
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return times[times.size() / 2];
}

Measurement OpBench::measure(const Candidate &candidate) {
    Measurement m;
    std::unique_ptr<Compiled> c = prepare(candidate, m.error);
    if (!c) return m;
    try {
        // At least 5 runs and 0.3 s, at most 50 runs.
        std::vector<double> times;
        double total = 0;
        while (times.size() < 5 || (total < 300 && times.size() < 50)) {
            times.push_back(time(*c, 1));
            total += times.back();
        }
        std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
        m.milliseconds = times[times.size() / 2];
        m.ok = true;
    } catch (const std::exception &e) {
        m.error = first_paragraph(e.what());
    }
    return m;
}

}  // namespace smoe::autotune
