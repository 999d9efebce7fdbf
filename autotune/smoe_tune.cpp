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
#include <set>
#include <sstream>
#include <thread>

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
};

[[noreturn]] void usage_error(const std::string &message) {
    if (!message.empty()) std::cerr << "smoe_tune: " << message << "\n";
    std::cerr << "usage: smoe_tune --out FILE [--config heat|weatherbench|cifar|b1:NAME|B,C,H,W,NE,E,K[,F]]\n"
              << "                 [--ops all|op,op,...] [--budget-minutes N] [--target auto|HALIDE_TARGET]\n"
              << "                 [--autoschedulers none|NAME,...] [--adams2019-beam N] | --list-knobs\n";
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

struct OpResult {
    std::string op;
    std::map<std::string, int> knobs;
    Measurement default_run, tuned_run;
    std::map<std::string, Measurement> autoscheduled;
    int candidates = 0;
    std::vector<std::string> failures;  // "knobs: why" of candidates that did not compile or run
};

// The search of one op: defaults, autoschedulers, then coordinate descent over its knobs from the
// defaults: each knob's values in turn, keeping a change only when it is at least 3% faster (so
// that noise does not pick), until a pass changes nothing. It stops at a deadline and can resume.
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
    std::ofstream out(path);
    out << "{\n  \"format\": \"smoe-tuned-store\",\n  \"format_version\": 1,\n"
        << "  \"halide_version\": \"" << HALIDE_VERSION_MAJOR << "." << HALIDE_VERSION_MINOR << "."
        << HALIDE_VERSION_PATCH << "\",\n"
        << "  \"target\": " << json_string(target.to_string()) << ",\n  \"entries\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
        const OpResult &r = results[i];
        out << "    {\"op\": " << json_string(r.op) << ", \"shape_class\": "
            << json_string(shape_class(shape.batch, shape.channels)) << ", \"config\": " << json_string(describe(shape))
            << ",\n     \"knobs\": {";
        size_t k = 0;
        for (const auto &[name, value] : r.knobs) out << (k++ ? ", " : "") << json_string(name) << ": " << value;
        out << "},\n     \"milliseconds\": {\"default\": " << json_ms(r.default_run) << ", \"tuned\": "
            << json_ms(r.tuned_run);
        for (const auto &[name, m] : r.autoscheduled) out << ", " << json_string(name) << ": " << json_ms(m);
        out << "},\n     \"candidates\": " << r.candidates << ", \"tuned_on\": " << json_string(today()) << "}"
            << (i + 1 < results.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    if (!out) throw std::runtime_error("could not write " + path);
}

void print_table(const std::vector<OpResult> &results, const Options &options) {
    std::cout << "\n" << std::left << std::setw(16) << "op" << std::right << std::setw(12) << "default ms"
              << std::setw(12) << "tuned ms";
    for (const std::string &name : options.autoschedulers) std::cout << std::setw(18) << (name + " ms");
    std::cout << std::setw(10) << "speedup" << "  tuned knobs\n";
    for (const OpResult &r : results) {
        std::cout << std::left << std::setw(16) << r.op << std::right << std::fixed << std::setprecision(3)
                  << std::setw(12) << r.default_run.milliseconds << std::setw(12) << r.tuned_run.milliseconds;
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
    for (const OpResult &r : results) {
        for (const auto &[name, m] : r.autoscheduled) {
            if (!m.ok) std::cout << r.op << " with " << name << " failed: " << m.error << "\n";
        }
        for (const std::string &failure : r.failures) std::cout << r.op << " candidate failed: " << failure << "\n";
    }
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
            benches.push_back(std::make_unique<OpBench>(op, make_workload(op, shape, target), target,
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
        for (const OpSearch &search : searches) results.push_back(search.result);
        std::cerr << "\n";
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
