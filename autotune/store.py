"""Tuned stores: one per CPU and target, under schedules/tuned/ (README "Tuning").

usage: python autotune/store.py RUN.json STORE_DIR KNOB_DEFAULTS.txt
       python autotune/store.py starts STORE_DIR TARGET CLASS CPU

The first form merges one smoe_tune run into the store of the run's CPU and target (written as
<vendor>-<family>-<model>-<isa>.json when it does not exist yet). KNOB_DEFAULTS.txt is what
`smoe_tune --list-knobs` prints; knobs at their default value are left out, so an entry lists
exactly what tuning changed. An entry replaces the store's entry of the same op and shape class
only when the run timed the stored choice beside its own (smoe_tune --start, which ./smoe tune
passes) and kept the faster: a run never makes the store slower. A store of another Halide
version is replaced as a whole (its schedules are stale).

The second form prints the smoe_tune arguments `--start op=knobs` of the store serving CPU
(vendor|family|model, as `smoe_tune --describe` prints it) and TARGET for shape class CLASS.
"""
import glob
import json
import os
import sys


def read_defaults(path):
    defaults = {}
    with open(path) as f:
        for line in f:
            op, name, default = line.split()[:3]
            defaults[(op, name)] = int(default.split("=", 1)[1])
    return defaults


def serves(store_cpu, cpu):
    """A store serves a CPU of its vendor and family, and of its model when it names one."""
    if not isinstance(store_cpu, dict):
        return False
    return (store_cpu.get("vendor") == cpu["vendor"] and store_cpu.get("family") == cpu["family"]
            and store_cpu.get("model", cpu["model"]) == cpu["model"])


def isa_of(target):
    features = target.split("-")
    return "avx512" if "avx512" in features else "avx2" if "avx2" in features else "x86-64"


def file_name(cpu, target):
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(cpu["vendor"], cpu["vendor"].lower())
    return f"{vendor}-{cpu['family']}-{cpu['model']}-{isa_of(target)}.json"


def find_store(store_dir, target, cpu, exact_model=False):
    """(path, store) of the store serving cpu and target, or (None, None)."""
    for path in sorted(glob.glob(os.path.join(store_dir, "*.json"))):
        try:
            with open(path) as f:
                store = json.load(f)
        except (OSError, ValueError):
            continue
        store_cpu = store.get("cpu")
        if store.get("target") != target or not serves(store_cpu, cpu):
            continue
        if exact_model and store_cpu.get("model") != cpu["model"]:
            continue
        return path, store
    return None, None


def parse_cpu(text):
    vendor, family, model = text.split("|")
    return {"vendor": vendor, "family": int(family), "model": int(model)}


def starts(store_dir, target, shape_class, cpu_text):
    _, store = find_store(store_dir, target, parse_cpu(cpu_text))
    for entry in (store or {}).get("entries", []):
        if entry["shape_class"] == shape_class:
            knobs = ",".join(f"{k}:{v}" for k, v in sorted(entry["knobs"].items())) or "default"
            print(f"--start\n{entry['op']}={knobs}")


def merge(run_path, store_dir, defaults_path):
    with open(run_path) as f:
        run = json.load(f)
    if run.get("format") != "smoe-tuned-store" or run.get("format_version") != 1 or "cpu" not in run:
        sys.exit(f"store.py: {run_path} is not a smoe_tune result")
    defaults = read_defaults(defaults_path)
    for entry in run["entries"]:
        entry["knobs"] = {name: value for name, value in sorted(entry["knobs"].items())
                          if defaults.get((entry["op"], name)) != value}

    cpu = {key: run["cpu"][key] for key in ("vendor", "family", "model")}
    path, old = find_store(store_dir, run["target"], cpu, exact_model=True)
    path = path or os.path.join(store_dir, file_name(cpu, run["target"]))
    store = {key: run[key] for key in ("format", "format_version", "halide_version", "target", "cpu")}
    store["entries"] = []
    if old is not None:
        if old.get("halide_version") == run["halide_version"]:
            store["entries"] = old.get("entries", [])
        else:
            print(f"store.py: {path} was tuned with Halide {old.get('halide_version')}: replaced")
    merged = []
    for entry in run["entries"]:
        key = (entry["op"], entry["shape_class"])
        previous = next((e for e in store["entries"] if (e["op"], e["shape_class"]) == key), None)
        if previous is not None and previous["knobs"] != entry["knobs"] and "stored" not in entry["milliseconds"]:
            print(f"store.py: kept the stored {key[0]} {key[1]} choice: this run did not time it "
                  "(./smoe tune passes it with --start)")
            continue
        store["entries"] = [e for e in store["entries"] if (e["op"], e["shape_class"]) != key] + [entry]
        merged.append(entry)
    store["entries"].sort(key=lambda e: (e["shape_class"], e["op"]))
    os.makedirs(store_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(store, f, indent=2)
        f.write("\n")
    print(f"store.py: {len(merged)} entries merged into {path} ({len(store['entries'])} in all)")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "starts":
        starts(*sys.argv[2:])
    elif len(sys.argv) == 4:
        merge(*sys.argv[1:])
    else:
        sys.exit(__doc__)
