#include "variant_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <c10/util/Logging.h>

#include "cpu_features.h"

namespace smoe::runtime {

const std::string &kernel_cpu_target() {
    static const std::string target = [] {
        std::stringstream targets(SMOE_CPU_TARGET_LIST);
        for (std::string candidate; std::getline(targets, candidate, ',');) {
            if (cpu_runs_target(candidate.c_str())) return candidate;
        }
        return std::string("none");
    }();
    return target;
}

const std::string &kernel_filing_prefix() {
    static const std::string prefix =
        host_cpu_fingerprint() + " " + kernel_cpu_target() + " kernels " + SMOE_KERNEL_FINGERPRINT;
    return prefix;
}

const std::optional<std::string> &kernel_cache_path() {
    static const std::optional<std::string> path = []() -> std::optional<std::string> {
        const char *value = std::getenv("SMOE_KERNEL_CACHE");
        if (value != nullptr) {
            const std::string text = value;
            if (text.empty() || text == "off" || text == "0" || text == "none") return std::nullopt;
            return text;
        }
        const char *xdg = std::getenv("XDG_CACHE_HOME");
        const char *home = std::getenv("HOME");
        std::filesystem::path dir;
        if (xdg != nullptr && *xdg != '\0') {
            dir = xdg;
        } else if (home != nullptr && *home != '\0') {
            dir = std::filesystem::path(home) / ".cache";
        } else {
            return std::nullopt;
        }
        return (dir / "smoe" / "kernel-choices.tsv").string();
    }();
    return path;
}

namespace {

// One line per choice: key, tab, the chosen candidate's name. Later lines win.
std::map<std::string, std::string> read_cache(const std::string &path) {
    std::map<std::string, std::string> choices;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        const size_t tab = line.find('\t');
        if (tab != std::string::npos) choices[line.substr(0, tab)] = line.substr(tab + 1);
    }
    return choices;
}

void append_choice(const std::string &path, const std::string &line) {
    static bool warned = false;
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ignored);
    std::ofstream out(path, std::ios::app);
    out << line << '\n';
    if (!out.good() && !warned) {
        warned = true;
        LOG(WARNING) << "smoe: cannot write the kernel choices to " << path
                     << " (SMOE_KERNEL_CACHE); they are kept for this process only";
    }
}

}  // namespace

std::vector<bool> candidates_worth_timing(const std::vector<double> &warmup_seconds) {
    std::vector<bool> worth(warmup_seconds.size(), true);
    if (warmup_seconds.empty()) return worth;
    const double fastest = *std::min_element(warmup_seconds.begin(), warmup_seconds.end());
    for (size_t i = 0; i < warmup_seconds.size(); ++i) {
        worth[i] = warmup_seconds[i] <= kHopelessRatio * fastest || warmup_seconds[i] <= kHopelessSeconds;
    }
    return worth;
}

int choose_by_measurement(const std::string &key, const std::vector<std::string> &names,
                          const std::function<int(int)> &run) {
    static std::mutex mutex;
    static std::map<std::string, std::string> choices = read_cache(*kernel_cache_path());
    // The kernels' fingerprint and the candidates are part of the key: a build with other kernels or
    // other variants measures again.
    std::string filed_key = kernel_filing_prefix() + " " + key + " among ";
    for (size_t i = 0; i < names.size(); ++i) filed_key += (i ? "," : "") + names[i];
    std::lock_guard<std::mutex> lock(mutex);
    auto found = choices.find(filed_key);
    if (found != choices.end()) {
        auto it = std::find(names.begin(), names.end(), found->second);
        if (it != names.end()) return static_cast<int>(it - names.begin());
    }
    // A warm-up of each, then 5 rounds that run the candidates still in the race in turn (so that
    // the machine's drifts hit them alike); the median of each one's rounds decides.
    const int n = static_cast<int>(names.size());
    auto timed = [&](int i, double &seconds) {
        const auto start = std::chrono::steady_clock::now();
        const int status = run(i);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return status;
    };
    std::vector<double> warmup(n);
    for (int i = 0; i < n; ++i) {
        if (timed(i, warmup[i]) != 0) return 0;  // the caller's own call reports the error
    }
    const std::vector<bool> worth = candidates_worth_timing(warmup);
    std::vector<std::vector<double>> seconds(n);
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < n; ++i) {
            if (!worth[i]) continue;
            seconds[i].emplace_back();
            if (timed(i, seconds[i].back()) != 0) return 0;
        }
    }
    int best = -1;
    double best_seconds = 0;
    for (int i = 0; i < n; ++i) {
        if (!worth[i]) continue;
        std::sort(seconds[i].begin(), seconds[i].end());
        if (best < 0 || seconds[i][2] < best_seconds) {
            best = i;
            best_seconds = seconds[i][2];
        }
    }
    choices[filed_key] = names[best];
    append_choice(*kernel_cache_path(), filed_key + '\t' + names[best]);
    return best;
}

}  // namespace smoe::runtime
