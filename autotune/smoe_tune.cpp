// smoe_tune: searches the schedule knobs of each op on this machine, next to Halide's
// autoschedulers, and writes what it chose as a tuned store (JSON) that the build consumes.
// ./smoe tune drives it (README "Tuning").
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "cpu_features.h"
#include "knobs.h"
#include "measure.h"
#include "workload.h"

namespace {

using namespace smoe;
using namespace smoe::autotune;
using Clock = std::chrono::steady_clock;

struct Options {
    std::string config = "weatherbench";
    std::vector<std::string> ops = tunable_ops();
    double budget_minutes = 20;
    std::string target = "auto";
    std::string out;
    std::vector<std::string> autoschedulers = {"Adams2019", "Mullapudi2016"};
    int adams2019_beam = 1;  // 1: greedy (seconds); 32: Halide's default beam search (minutes per op)
    std::vector<std::string> compare;  // --compare: knob settings to time against the defaults
    int rounds = 7;                    // interleaved rounds of --compare and of the final comparison
    std::map<std::string, std::string> start;  // --start op=knobs: the store's choice for the class
    std::map<std::string, std::string> generator_params;  // --generator-param name=value (algorithm choices)
    bool describe_only = false;        // --describe: print the target and shape class, then stop
};

[[noreturn]] void usage_error(const std::string &message) {
    if (!message.empty()) std::cerr << "smoe_tune: " << message << "\n";
    std::cerr << "usage: smoe_tune --out FILE [--config heat|weatherbench|cifar|b1:NAME|B,C,H,W,NE,E,K[,F]]\n"
              << "                 [--ops all|op,op,...] [--budget-minutes N] [--target auto|HALIDE_TARGET]\n"
              << "                 [--autoschedulers none|NAME,...] [--adams2019-beam N] | --list-knobs\n"
              << "                 [--start OP=KNOBS ...] [--rounds N] [--generator-param NAME=VALUE ...]\n"
              << "       smoe_tune --ops OP --compare KNOBS [--compare KNOBS ...] [--rounds N] [--config ...]\n"
              << "                 (KNOBS: name:value,... or default; times them interleaved, N rounds)\n"
              << "       smoe_tune --describe [--config ...] [--target ...]  (the target and shape class)\n";
    std::exit(message.empty() ? 0 : 2);
}

std::vector<std::string> split(const std::string &text, char sep) {
    std::vector<std::string> items;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, sep)) {
        if (!item.empty()) items.push_back(item);
    }
    return items;
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            usage_error("");
        } else if (arg == "--config") {
            o.config = value();
        } else if (arg == "--ops") {
            const std::string v = value();
            o.ops = v == "all" ? tunable_ops() : split(v, ',');
            for (const std::string &op : o.ops) {
                if (std::find(tunable_ops().begin(), tunable_ops().end(), op) == tunable_ops().end()) {
                    usage_error("--ops: unknown op '" + op + "' (ops: forward, backward_data, backward_weight, "
                                "route_topk, error_quantile, rc_loss, gate_gradient, or all)");
                }
            }
        } else if (arg == "--budget-minutes") {
            try {
                o.budget_minutes = std::stod(value());
            } catch (const std::exception &) {
                usage_error("--budget-minutes needs a number of minutes");
            }
            if (!(o.budget_minutes > 0)) usage_error("--budget-minutes must be positive");
        } else if (arg == "--target") {
            o.target = value();
        } else if (arg == "--adams2019-beam") {
            try {
                o.adams2019_beam = std::stoi(value());
            } catch (const std::exception &) {
                usage_error("--adams2019-beam needs a positive integer");
            }
            if (o.adams2019_beam < 1) usage_error("--adams2019-beam needs a positive integer");
        } else if (arg == "--out") {
            o.out = value();
        } else if (arg == "--autoschedulers") {
            const std::string v = value();
            o.autoschedulers = v == "none" ? std::vector<std::string>{} : split(v, ',');
            for (const std::string &name : o.autoschedulers) {
                if (name != "Adams2019" && name != "Mullapudi2016" && name != "Li2018") {
                    usage_error("--autoschedulers: '" + name + "' is not Adams2019, Mullapudi2016, Li2018 or none");
                }
            }
        } else if (arg == "--compare") {
            o.compare.push_back(value());
        } else if (arg == "--start") {
            const std::string v = value();
            const size_t eq = v.find('=');
            if (eq == std::string::npos || eq == 0) usage_error("--start needs OP=KNOBS, got '" + v + "'");
            o.start[v.substr(0, eq)] = v.substr(eq + 1);
        } else if (arg == "--generator-param") {
            const std::string v = value();
            const size_t eq = v.find('=');
            if (eq == std::string::npos || eq == 0) usage_error("--generator-param needs NAME=VALUE, got '" + v + "'");
            o.generator_params[v.substr(0, eq)] = v.substr(eq + 1);
        } else if (arg == "--describe") {
            o.describe_only = true;
        } else if (arg == "--rounds") {
            try {
                o.rounds = std::stoi(value());
            } catch (const std::exception &) {
                usage_error("--rounds needs a positive integer");
            }
            if (o.rounds < 1) usage_error("--rounds needs a positive integer");
        } else if (arg == "--list-knobs") {
            for (const std::string &op : tunable_ops()) {
                for (const KnobSpec &k : knob_space(op, false)) {
                    std::cout << op << " " << k.name << " default=" << k.default_value << " values=";
                    for (size_t v = 0; v < k.values.size(); ++v) std::cout << (v ? "," : "") << k.values[v];
                    std::cout << "  " << k.meaning << "\n";
                }
            }
            std::exit(0);
        } else {
            usage_error("unknown argument '" + arg + "'");
        }
    }
    if (!o.compare.empty()) {
        if (o.ops.size() != 1) usage_error("--compare needs exactly one op in --ops");
        return o;
    }
    if (o.describe_only) return o;
    if (o.out.empty()) usage_error("--out FILE is required");
    return o;
}

bool host_runs(const Halide::Target &host, const Halide::Target &t) {
    if (t.arch != host.arch || t.os != host.os || t.bits != host.bits) return false;
    // Features that change how code is instrumented or checked, not which instructions it uses.
    static const Halide::Target::Feature instrumentation[] = {Halide::Target::Profile, Halide::Target::ProfileByTimer,
                                                              Halide::Target::Debug, Halide::Target::NoAsserts};
    for (int f = 0; f < Halide::Target::FeatureEnd; ++f) {
        const auto feature = static_cast<Halide::Target::Feature>(f);
        if (std::find(std::begin(instrumentation), std::end(instrumentation), feature) != std::end(instrumentation)) continue;
        if (t.has_feature(feature) && !host.has_feature(feature)) return false;
    }
    return true;
}

// The first of the build's CPU targets this machine runs: the one whose kernels it uses.
Halide::Target choose_target(const std::string &requested) {
    const Halide::Target host = Halide::get_host_target();
    if (requested != "auto") {
        Halide::Target t(requested);
        if (!host_runs(host, t)) usage_error("--target " + requested + " does not run on this machine (" + host.to_string() + ")");
        // Linux hands out the AMX tiles' state only on request; the runtime's check of the feature makes it.
        if (t.has_feature(Halide::Target::AVX512_SapphireRapids) &&
            !smoe::runtime::cpu_runs_target("x86-64-linux-avx512_sapphirerapids")) {
            usage_error("--target " + requested + ": this process was not granted the AMX tiles' state");
        }
        return t;
    }
    for (const std::string &name : split(SMOE_CPU_TARGETS, ',')) {
        Halide::Target t(name);
        t = t.without_feature(Halide::Target::UserContext);
        if (host_runs(host, t)) return t;
    }
    usage_error("none of the build's CPU targets (" + std::string(SMOE_CPU_TARGETS) + ") runs on this machine");
}

class Progress {
public:
    Progress(double budget_seconds) : budget_(budget_seconds), start_(Clock::now()) {}
    double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    void show(const std::string &op, int tried, double best_ms) const {
        const double fraction = std::min(1.0, elapsed() / budget_);
        const int filled = static_cast<int>(fraction * 30);
        std::fprintf(stderr, "\r[%s%s] %3.0f%% %-16s %3d tried, best %9.3f ms", std::string(filled, '#').c_str(),
                     std::string(30 - filled, '.').c_str(), fraction * 100, op.c_str(), tried, best_ms);
        std::fflush(stderr);
    }

private:
    double budget_;
    Clock::time_point start_;
};

// "name:value,..." (or "default") as a knob map over the op's defaults.
std::map<std::string, int> parse_knobs(const std::string &op, const std::string &text) {
    std::map<std::string, int> knobs;
    const std::vector<KnobSpec> &space = knob_space(op, false);
    for (const KnobSpec &k : space) knobs[k.name] = k.default_value;
    if (text == "default") return knobs;
    for (const std::string &item : split(text, ',')) {
        const size_t colon = item.find(':');
        const std::string name = item.substr(0, colon);
        auto spec = std::find_if(space.begin(), space.end(), [&](const KnobSpec &k) { return k.name == name; });
        int value = 0;
        try {
            if (colon == std::string::npos || spec == space.end()) throw std::invalid_argument(item);
            value = std::stoi(item.substr(colon + 1));
        } catch (const std::exception &) {
            usage_error("--compare: '" + item + "' is not name:value of a knob of " + op + " (smoe_tune --list-knobs)");
        }
        if (value != 0 && std::find(spec->values.begin(), spec->values.end(), value) == spec->values.end()) {
            usage_error("--compare: " + item + " is outside the knob's range (smoe_tune --list-knobs)");
        }
        knobs[name] = value;
    }
    return knobs;
}

struct OpResult {
    std::string op;
    std::map<std::string, int> knobs;
    std::optional<std::map<std::string, int>> stored;  // the store's choice for the class, if any
    Measurement default_run, tuned_run, stored_run;
    // The final comparison's rounds (interleaved): "default", "stored", "tuned" -> milliseconds.
    std::map<std::string, std::vector<double>> final_rounds;
    std::map<std::string, Measurement> autoscheduled;
    int candidates = 0;
    std::vector<std::string> failures;  // "knobs: why" of candidates that did not compile or run
};

// The search of one op: defaults, the store's choice for the class (--start), autoschedulers,
// then coordinate descent over its knobs from the faster of the first two: each knob's values in
// turn, keeping a change only when it is at least 3% faster (so that noise does not pick), until a
// pass changes nothing. It stops at a deadline and can resume.
struct OpSearch {
    OpResult result;
    std::set<std::map<std::string, int>> tried;
    bool converged = false;
};

OpSearch start_search(const std::string &op, OpBench &bench, const Options &options, Progress &progress) {
    OpSearch search;
    OpResult &r = search.result;
    r.op = op;
    for (const KnobSpec &k : knob_space(op, false)) r.knobs[k.name] = k.default_value;
    r.default_run = bench.measure({r.knobs, ""});
    ++r.candidates;
    search.tried.insert(r.knobs);
    if (!r.default_run.ok) throw std::runtime_error(op + ": the default schedule failed: " + r.default_run.error);
    r.tuned_run = r.default_run;
    auto start = options.start.find(op);
    if (start != options.start.end()) {
        r.stored = parse_knobs(op, start->second);
        if (search.tried.insert(*r.stored).second) {
            r.stored_run = bench.measure({*r.stored, ""});
            ++r.candidates;
            if (!r.stored_run.ok) r.failures.push_back("the store's choice " + start->second + ": " + r.stored_run.error);
            if (r.stored_run.ok && r.stored_run.milliseconds < r.tuned_run.milliseconds) {
                r.knobs = *r.stored;
                r.tuned_run = r.stored_run;
            }
        } else {
            r.stored_run = r.default_run;
        }
    }
    progress.show(op, r.candidates, r.tuned_run.milliseconds);
    for (const std::string &name : options.autoschedulers) {
        r.autoscheduled[name] = bench.measure({{}, name});
        ++r.candidates;
        progress.show(op, r.candidates, r.tuned_run.milliseconds);
    }
    return search;
}

void descend(OpSearch &search, OpBench &bench, double deadline, Progress &progress) {
    OpResult &r = search.result;
    const std::vector<KnobSpec> &space = knob_space(r.op, false);
    bool changed = true;
    while (changed) {
        changed = false;
        for (const KnobSpec &k : space) {
            // A knob of another formulation than the current one changes nothing.
            auto formulation = r.knobs.find("formulation");
            if (!k.formulations.empty() && formulation != r.knobs.end() &&
                std::find(k.formulations.begin(), k.formulations.end(), formulation->second) == k.formulations.end()) {
                continue;
            }
            for (int value : k.values) {
                if (progress.elapsed() >= deadline) return;
                Candidate c{r.knobs, ""};
                c.knobs[k.name] = value;
                if (!search.tried.insert(c.knobs).second) continue;
                const Measurement m = bench.measure(c);
                ++r.candidates;
                if (!m.ok) r.failures.push_back(c.label() + ": " + m.error);
                if (m.ok && m.milliseconds < 0.97 * r.tuned_run.milliseconds) {
                    r.knobs = c.knobs;
                    r.tuned_run = m;
                    changed = true;
                }
                progress.show(r.op, r.candidates, r.tuned_run.milliseconds);
            }
        }
    }
    search.converged = true;
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// The last word on an op: the defaults, the store's choice and the tuned knobs timed again,
// interleaved for `rounds` rounds (each the median of 5 runs), so that the machine's drifts hit
// them alike. Their medians replace the search's single timings, and a tuned choice that is not at
// least 3% faster than the store's (or the defaults) gives way to it: a run never leaves the store
// slower than it was.
void final_comparison(OpResult &r, OpBench &bench, int rounds) {
    std::map<std::string, int> defaults;
    for (const KnobSpec &k : knob_space(r.op, false)) defaults[k.name] = k.default_value;
    std::vector<std::pair<std::string, std::map<std::string, int>>> candidates = {{"default", defaults}};
    if (r.stored && r.stored_run.ok && *r.stored != defaults) candidates.push_back({"stored", *r.stored});
    if (r.knobs != defaults && !(r.stored && r.knobs == *r.stored)) candidates.push_back({"tuned", r.knobs});
    std::vector<std::unique_ptr<Compiled>> compiled;
    for (const auto &[label, knobs] : candidates) {
        std::string error;
        compiled.push_back(bench.prepare({knobs, ""}, error));
        if (!compiled.back()) throw std::runtime_error(r.op + ": the " + label + " schedule failed again: " + error);
    }
    for (int round = 0; round < rounds; ++round) {
        for (size_t n = 0; n < candidates.size(); ++n) {
            const size_t i = (n + round) % candidates.size();
            r.final_rounds[candidates[i].first].push_back(bench.time(*compiled[i], 5));
        }
    }
    r.default_run.milliseconds = median_of(r.final_rounds.at("default"));
    if (r.stored && *r.stored == defaults) {
        r.stored_run = r.default_run;
    } else if (r.final_rounds.count("stored")) {
        r.stored_run.milliseconds = median_of(r.final_rounds.at("stored"));
    }
    if (r.final_rounds.count("tuned")) {
        r.tuned_run.milliseconds = median_of(r.final_rounds.at("tuned"));
        // As in the descent, a change has to be at least 3% faster: within that, noise decides.
        const Measurement &best_before = r.stored && r.stored_run.ok ? r.stored_run : r.default_run;
        if (r.tuned_run.milliseconds >= 0.97 * best_before.milliseconds) {
            r.knobs = r.stored && r.stored_run.ok ? *r.stored : defaults;
            r.tuned_run = best_before;
        }
    } else if (r.stored && r.stored_run.ok && r.knobs != *r.stored) {
        // The search ended at the defaults: they replace the store's choice only when 3% faster.
        const bool keep_stored = r.default_run.milliseconds >= 0.97 * r.stored_run.milliseconds;
        if (keep_stored) r.knobs = *r.stored;
        r.tuned_run = keep_stored ? r.stored_run : r.default_run;
    } else {
        r.tuned_run = r.stored && r.stored_run.ok ? r.stored_run : r.default_run;
    }
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string json_ms(const Measurement &m) {
    if (!m.ok) return "null";
    std::ostringstream out;
    out << std::setprecision(6) << m.milliseconds;
    return out.str();
}

std::string today() {
    const std::time_t now = std::time(nullptr);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
    return text;
}

void write_store(const std::string &path, const Halide::Target &target, const LayerShape &shape,
                 const std::vector<OpResult> &results) {
    const runtime::CpuIdentity &cpu = runtime::host_cpu();
    std::ofstream out(path);
    out << "{\n  \"format\": \"smoe-tuned-store\",\n  \"format_version\": 1,\n"
        << "  \"halide_version\": \"" << HALIDE_VERSION_MAJOR << "." << HALIDE_VERSION_MINOR << "."
        << HALIDE_VERSION_PATCH << "\",\n"
        << "  \"target\": " << json_string(target.to_string()) << ",\n"
        << "  \"cpu\": {\"vendor\": " << json_string(cpu.vendor) << ", \"family\": " << cpu.family
        << ", \"model\": " << cpu.model << ", \"name\": " << json_string(cpu.name) << "},\n  \"entries\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
        const OpResult &r = results[i];
        out << "    {\"op\": " << json_string(r.op) << ", \"shape_class\": "
            << json_string(shape_class(shape.batch, shape.channels)) << ", \"config\": " << json_string(describe(shape))
            << ",\n     \"knobs\": {";
        size_t k = 0;
        for (const auto &[name, value] : r.knobs) out << (k++ ? ", " : "") << json_string(name) << ": " << value;
        out << "},\n     \"milliseconds\": {\"default\": " << json_ms(r.default_run);
        if (r.stored) out << ", \"stored\": " << json_ms(r.stored_run);
        out << ", \"tuned\": " << json_ms(r.tuned_run);
        for (const auto &[name, m] : r.autoscheduled) out << ", " << json_string(name) << ": " << json_ms(m);
        out << "},\n     \"spread\": {";
        size_t n = 0;
        for (const auto &[label, rounds] : r.final_rounds) {
            const auto [low, high] = std::minmax_element(rounds.begin(), rounds.end());
            out << (n++ ? ", " : "") << json_string(label) << ": [" << *low << ", " << *high << "]";
        }
        out << "}, \"rounds\": " << (r.final_rounds.empty() ? 0 : r.final_rounds.begin()->second.size());
        if (r.stored) out << ", \"stored_knobs\": " << json_string(format_knobs(*r.stored));
        out << ",\n     \"candidates\": " << r.candidates << ", \"tuned_on\": " << json_string(today()) << "}"
            << (i + 1 < results.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    if (!out) throw std::runtime_error("could not write " + path);
}

std::string spread_of(const OpResult &r, const std::string &label) {
    auto it = r.final_rounds.find(label);
    if (it == r.final_rounds.end()) return "";
    const auto [low, high] = std::minmax_element(it->second.begin(), it->second.end());
    std::ostringstream out;
    out << std::fixed << std::setprecision(3) << *low << "-" << *high;
    return out.str();
}

void print_table(const std::vector<OpResult> &results, const Options &options) {
    std::cout << "\n" << std::left << std::setw(16) << "op" << std::right << std::setw(12) << "default ms"
              << std::setw(12) << "stored ms" << std::setw(12) << "tuned ms";
    for (const std::string &name : options.autoschedulers) std::cout << std::setw(18) << (name + " ms");
    std::cout << std::setw(10) << "speedup" << "  tuned knobs\n";
    for (const OpResult &r : results) {
        std::cout << std::left << std::setw(16) << r.op << std::right << std::fixed << std::setprecision(3)
                  << std::setw(12) << r.default_run.milliseconds << std::setw(12);
        if (r.stored) {
            std::cout << r.stored_run.milliseconds;
        } else {
            std::cout << "-";
        }
        std::cout << std::setw(12) << r.tuned_run.milliseconds;
        for (const std::string &name : options.autoschedulers) {
            const Measurement &m = r.autoscheduled.at(name);
            std::cout << std::setw(18);
            if (m.ok) {
                std::cout << m.milliseconds;
            } else {
                std::cout << "failed";
            }
        }
        std::cout << std::setw(9) << std::setprecision(2) << r.default_run.milliseconds / r.tuned_run.milliseconds
                  << "x  " << Candidate{r.knobs, ""}.label() << "\n";
    }
    std::cout << "(default, stored and tuned: medians of " << options.rounds
              << " interleaved rounds; their ranges, ms:";
    for (const OpResult &r : results) {
        std::cout << "\n  " << r.op << ":";
        for (const std::string &label : {"default", "stored", "tuned"}) {
            const std::string range = spread_of(r, label);
            if (!range.empty()) std::cout << " " << label << " " << range;
        }
    }
    std::cout << ")\n";
    for (const OpResult &r : results) {
        for (const auto &[name, m] : r.autoscheduled) {
            if (!m.ok) std::cout << r.op << " with " << name << " failed: " << m.error << "\n";
        }
        for (const std::string &failure : r.failures) std::cout << r.op << " candidate failed: " << failure << "\n";
    }
}

// The workload's float32 tensors, the quantile excepted, stored as `type`.
template <typename Stored>
void store_as(OpWorkload &work, const Halide::Type &type) {
    for (auto &[name, buffer] : work.buffers) {
        if (name == "quantile" || buffer.type() != Halide::Float(32)) continue;
        Halide::Buffer<float> values = buffer;
        Halide::Buffer<Stored> stored(type, nullptr, values.dimensions(), values.raw_buffer()->dim);
        stored.allocate();
        stored.for_each_element([&](const int *at) { stored(at) = Stored(values(at)); });
        buffer = stored;
    }
}

// The op's workload with the --generator-param choices.
OpWorkload workload_of(const std::string &op, const LayerShape &shape, const Halide::Target &target,
                       const Options &options) {
    OpWorkload work = make_workload(op, shape, target);
    for (const auto &[name, value] : options.generator_params) work.params[name] = value;
    // A bfloat16 or float16 kernel stores the layer's tensors in that type; the quantile stays
    // float32.
    const std::string dtype = work.params["dtype"];
    if (dtype == "bfloat16") {
        store_as<Halide::bfloat16_t>(work, Halide::BFloat(16));
    } else if (dtype == "float16") {
        store_as<Halide::float16_t>(work, Halide::Float(16));
    }
    return work;
}

// Times the defaults and the --compare settings interleaved: each round runs every candidate in
// turn (starting one later each round), so that the machine's drifts hit them all alike.
int compare(const Options &options, const LayerShape &shape, const Halide::Target &target, int threads) {
    const std::string &op = options.ops.front();
    OpBench bench(op, workload_of(op, shape, target, options), target, SMOE_AUTOSCHEDULER_DIR, threads,
                  options.adams2019_beam);
    std::vector<std::string> labels = {"default"};
    for (const std::string &text : options.compare) labels.push_back(text);
    std::vector<std::unique_ptr<Compiled>> compiled;
    // A setting the generator rejects (e.g. the defaults under a generator parameter that needs
    // other knobs) is reported and left out; the others are still compared.
    for (size_t i = 0; i < labels.size();) {
        std::string error;
        compiled.push_back(bench.prepare({parse_knobs(op, labels[i]), ""}, error));
        if (compiled.back()) {
            ++i;
            continue;
        }
        std::cerr << "smoe_tune: " << op << " " << labels[i] << " failed: " << error << "\n";
        compiled.pop_back();
        labels.erase(labels.begin() + i);
    }
    if (labels.empty()) return 1;
    std::vector<std::vector<double>> rounds(labels.size());
    for (int round = 0; round < options.rounds; ++round) {
        for (size_t n = 0; n < labels.size(); ++n) {
            const size_t i = (n + round) % labels.size();
            rounds[i].push_back(bench.time(*compiled[i], 5));
        }
    }
    std::cout << op << " on " << describe(shape) << ", " << target.to_string() << ": medians of " << options.rounds
              << " interleaved rounds (each the median of 5 runs), ms\n";
    double first = 0;
    for (size_t i = 0; i < labels.size(); ++i) {
        std::vector<double> r = rounds[i];
        std::sort(r.begin(), r.end());
        const double median = r[r.size() / 2];
        if (i == 0) first = median;
        std::cout << std::fixed << std::setprecision(3) << std::setw(10) << median << "  (" << r.front() << " to "
                  << r.back() << ")  " << std::setprecision(2) << first / median << "x  " << labels[i] << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const Options options = parse(argc, argv);
    LayerShape shape;
    try {
        shape = parse_layer(options.config);
    } catch (const std::invalid_argument &e) {
        usage_error(e.what());
    }
    const Halide::Target target = choose_target(options.target);
    const int threads = std::max(1u, std::thread::hardware_concurrency());
    if (options.describe_only) {
        const runtime::CpuIdentity &cpu = runtime::host_cpu();
        std::cout << "target=" << target.to_string() << " class=" << shape_class(shape.batch, shape.channels)
                  << " cpu=" << cpu.vendor << "|" << cpu.family << "|" << cpu.model << "\n";
        return 0;
    }
    if (!options.compare.empty()) {
        try {
            return compare(options, shape, target, threads);
        } catch (const std::exception &e) {
            std::cerr << "smoe_tune: " << e.what() << "\n";
            return 1;
        }
    }
    std::cerr << "smoe_tune: " << options.ops.size() << " op(s) on " << target.to_string() << ", layer "
              << describe(shape) << " (" << shape_class(shape.batch, shape.channels) << "), budget "
              << options.budget_minutes << " min\n";
    Progress progress(options.budget_minutes * 60);
    std::vector<OpResult> results;
    try {
        // First every op gets an equal share of what is left; then the time ops did not need goes
        // to those whose descent it cut short.
        std::vector<std::unique_ptr<OpBench>> benches;
        std::vector<OpSearch> searches;
        const double budget = options.budget_minutes * 60;
        for (size_t i = 0; i < options.ops.size(); ++i) {
            const std::string &op = options.ops[i];
            const double share = (budget - progress.elapsed()) / static_cast<double>(options.ops.size() - i);
            const double deadline = progress.elapsed() + share;
            benches.push_back(std::make_unique<OpBench>(op, workload_of(op, shape, target, options), target,
                                                        SMOE_AUTOSCHEDULER_DIR, threads, options.adams2019_beam));
            searches.push_back(start_search(op, *benches.back(), options, progress));
            descend(searches.back(), *benches.back(), deadline, progress);
        }
        for (;;) {
            std::vector<size_t> open;
            for (size_t i = 0; i < searches.size(); ++i) {
                if (!searches[i].converged) open.push_back(i);
            }
            if (open.empty() || progress.elapsed() >= budget) break;
            for (size_t n = 0; n < open.size(); ++n) {
                const double share = (budget - progress.elapsed()) / static_cast<double>(open.size() - n);
                descend(searches[open[n]], *benches[open[n]], progress.elapsed() + share, progress);
            }
        }
        std::cerr << "\nsmoe_tune: final comparison (" << options.rounds << " interleaved rounds per op)\n";
        for (size_t i = 0; i < searches.size(); ++i) {
            results.push_back(searches[i].result);
            final_comparison(results.back(), *benches[i], options.rounds);
        }
        write_store(options.out, target, shape, results);
    } catch (const std::exception &e) {
        std::cerr << "\nsmoe_tune: " << e.what() << "\n";
        return 1;
    } catch (const Halide::Error &e) {
        std::cerr << "\nsmoe_tune: " << e.what() << "\n";
        return 1;
    }
    print_table(results, options);
    std::cout << "\nsmoe_tune: " << results.size() << " op(s) in " << std::fixed << std::setprecision(1)
              << progress.elapsed() / 60 << " min; wrote " << options.out << "\n";
    return 0;
}
