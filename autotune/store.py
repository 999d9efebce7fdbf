"""Merges one smoe_tune run into the tuned store of its target (schedules/tuned/<target>.json).

usage: python autotune/store.py RUN.json STORE_DIR KNOB_DEFAULTS.txt

KNOB_DEFAULTS.txt is what `smoe_tune --list-knobs` prints. Knobs at their default value are left
out of the store, so an entry lists exactly what tuning changed. Entries of the same op and shape
class are replaced; a store of another Halide version is replaced as a whole (its schedules are
stale).
"""
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


def main(run_path, store_dir, defaults_path):
    with open(run_path) as f:
        run = json.load(f)
    if run.get("format") != "smoe-tuned-store" or run.get("format_version") != 1:
        sys.exit(f"store.py: {run_path} is not a smoe_tune result")
    defaults = read_defaults(defaults_path)
    for entry in run["entries"]:
        entry["knobs"] = {name: value for name, value in sorted(entry["knobs"].items())
                          if defaults.get((entry["op"], name)) != value}

    path = os.path.join(store_dir, run["target"] + ".json")
    store = {key: run[key] for key in ("format", "format_version", "halide_version", "target")}
    store["entries"] = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
            if old.get("halide_version") == run["halide_version"] and old.get("target") == run["target"]:
                store["entries"] = old.get("entries", [])
            else:
                print(f"store.py: {path} was tuned with Halide {old.get('halide_version')}: replaced")
        except (OSError, ValueError) as e:
            print(f"store.py: {path} could not be read ({e}): replaced")
    tuned = {(e["op"], e["shape_class"]) for e in run["entries"]}
    store["entries"] = [e for e in store["entries"] if (e["op"], e["shape_class"]) not in tuned] + run["entries"]
    store["entries"].sort(key=lambda e: (e["shape_class"], e["op"]))
    os.makedirs(store_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(store, f, indent=2)
        f.write("\n")
    print(f"store.py: {len(run['entries'])} entries merged into {path} ({len(store['entries'])} in all)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
