"""Tuning: a tiny-budget ./smoe tune run writes a valid store; the build reads a store into tuned
kernels (a fresh configure puts its knobs into the generator commands, and one tuned kernel is
compiled with its command); corrupt, stale and foreign stores are rejected with a message and the
defaults are used; the tuned kernels this build compiled agree with the reference in every routing
variant."""
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import unittest

import torch

import smoe
from commands import run
from test_randomized import check_case

SOURCE = pathlib.Path(os.environ["SMOE_SOURCE_DIR"])
BUILD = pathlib.Path(os.environ["SMOE_BUILD_DIR"])
CMAKE = os.environ["SMOE_CMAKE"]
NINJA = os.environ["SMOE_NINJA"]
TUNE = os.environ["SMOE_TUNE"]
PYTHON = os.environ["SMOE_PYTHON"]
WORK = BUILD / "tests" / "tuning"

TARGET = "x86-64-linux-avx-avx2-f16c-fma-sse41"
CPU_TARGETS = "x86-64-linux-sse41-avx-avx2-f16c-fma-avx512-avx512_skylake;x86-64-linux-sse41-avx-avx2-f16c-fma;x86-64-linux"


def host_cpu():
    """This machine's CPU as a store records it (vendor, family, model), from /proc/cpuinfo."""
    fields = {}
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return {"vendor": fields["vendor_id"], "family": int(fields["cpu family"]), "model": int(fields["model"])}


HOST_CPU = host_cpu()


def read_store(path):
    """What the build makes of a store: ('valid', target, entries) or ('rejected', warning)."""
    result = subprocess.run([CMAKE, f"-DSTORE={path}", "-DHALIDE_VERSION=21.0.0", f"-DCPU_TARGETS={CPU_TARGETS}",
                             "-P", SOURCE / "cmake" / "SmoeTunedStore.cmake"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line.removeprefix("-- ") for line in result.stdout.splitlines()]
    if lines[0] == "rejected":
        return "rejected", " ".join(result.stderr.split())
    return "valid", lines[0].split()[1], [line.split(" ", 1)[1] for line in lines[1:]], lines[0].split()[2]


def store(**changes):
    text = {"format": "smoe-tuned-store", "format_version": 1, "halide_version": "21.0.0", "target": TARGET,
            "cpu": HOST_CPU, "entries": [{"op": "forward", "shape_class": "b1-3_c8+", "config": "B=1", "knobs": {"dot_channels": 2},
                         "milliseconds": {"default": 2.0, "tuned": 1.0}}]}
    text.update(changes)
    return json.dumps(text)


class Stores(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)

    def write(self, name, text):
        path = WORK / name
        path.write_text(text)
        return path

    def test_tiny_tune_writes_a_store_the_build_accepts(self):
        out = WORK / "run.json"
        table = run([TUNE, "--config", "4,8,6,10,4,2,3", "--ops", "route_topk,error_quantile", "--budget-minutes",
                     "0.1", "--autoschedulers", "Mullapudi2016", "--out", out])
        self.assertIn("default ms", table)
        self.assertIn("Mullapudi2016 ms", table)
        run_json = json.loads(out.read_text())
        self.assertEqual(run_json["halide_version"], "21.0.0")
        self.assertEqual([e["op"] for e in run_json["entries"]], ["route_topk", "error_quantile"])
        for entry in run_json["entries"]:
            self.assertEqual(entry["shape_class"], "b4+_c8+")
            self.assertGreater(entry["milliseconds"]["default"], 0)
            self.assertLessEqual(entry["milliseconds"]["tuned"], entry["milliseconds"]["default"])

        defaults = WORK / "defaults.txt"
        defaults.write_text(run([TUNE, "--list-knobs"]))
        stores = WORK / "stores"
        run([PYTHON, SOURCE / "autotune" / "store.py", out, stores, defaults])
        [merged] = list(stores.glob("*.json"))
        self.assertEqual({k: run_json["cpu"][k] for k in HOST_CPU}, HOST_CPU)
        vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(HOST_CPU["vendor"], HOST_CPU["vendor"].lower())
        self.assertTrue(merged.name.startswith(f"{vendor}-{HOST_CPU['family']}-{HOST_CPU['model']}-"), merged.name)
        status, target, entries, cpu = read_store(merged)
        self.assertEqual((status, target), ("valid", run_json["target"]))
        self.assertEqual(cpu, f"{HOST_CPU['vendor']}|{HOST_CPU['family']}|{HOST_CPU['model']}")
        self.assertEqual(sorted(e.split("|")[0] for e in entries), ["error_quantile", "route_topk"])

    def test_a_run_never_replaces_a_stored_choice_it_did_not_beat(self):
        """The final comparison times the store's choice (--start) beside the tuned one; the run
        keeps the faster, and store.py keeps an entry a run did not time."""
        out = WORK / "start.json"
        run([TUNE, "--config", "4,8,6,10,4,2,3", "--ops", "rc_loss", "--budget-minutes", "0.05",
             "--autoschedulers", "none", "--rounds", "3", "--start", "rc_loss=vector_width:8", "--out", out])
        [entry] = json.loads(out.read_text())["entries"]
        self.assertEqual(entry["stored_knobs"], "vector_width:8")
        self.assertIn("stored", entry["milliseconds"])
        self.assertLessEqual(entry["milliseconds"]["tuned"], entry["milliseconds"]["stored"])
        self.assertEqual(set(entry["spread"]) - {"default", "stored", "tuned"}, set())

        stores = WORK / "kept"
        shutil.rmtree(stores, ignore_errors=True)
        stores.mkdir()
        vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(HOST_CPU["vendor"], HOST_CPU["vendor"].lower())
        kept = stores / "kept.json"
        kept.write_text(store(target=entry_target(out), entries=[
            {"op": "rc_loss", "shape_class": "b4+_c8+", "knobs": {"vector_width": 4}, "milliseconds": {"tuned": 1.0}}]))
        untimed = json.loads(out.read_text())
        for e in untimed["entries"]:
            e["knobs"] = {"vector_width": 16}
            e["milliseconds"].pop("stored")
        (WORK / "untimed.json").write_text(json.dumps(untimed))
        defaults = WORK / "defaults.txt"
        defaults.write_text(run([TUNE, "--list-knobs"]))
        printed = run([PYTHON, SOURCE / "autotune" / "store.py", WORK / "untimed.json", stores, defaults])
        self.assertIn("kept the stored rc_loss b4+_c8+ choice", printed)
        self.assertEqual(json.loads(kept.read_text())["entries"][0]["knobs"], {"vector_width": 4})
        self.assertFalse(any(p.name.startswith(vendor) for p in stores.glob("*.json")))

    def test_a_fresh_configure_compiles_the_stores_knobs(self):
        path = self.write("rebuild.json", json.dumps({
            "format": "smoe-tuned-store", "format_version": 1, "halide_version": "21.0.0", "target": TARGET,
            "cpu": HOST_CPU, "entries": [
                {"op": "forward", "shape_class": "b1-3_c8+", "knobs": {"dot_channels": 2, "row_tile": 2}},
                {"op": "route_topk", "shape_class": "b4+_c8+", "knobs": {"pixel_vector": 8}},
            ]}))
        build = WORK / "rebuild"
        run([CMAKE, "-S", SOURCE, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}",
             f"-DPython_EXECUTABLE={PYTHON}", f"-DSMOE_TUNED_STORES={path}", "-DSMOE_CUDA=OFF",
             "-DSMOE_BUILD_TESTS=OFF", "-DSMOE_BUILD_BENCHMARKS=OFF", "-DSMOE_BUILD_EXAMPLES=OFF"])
        ninja = (build / "build.ninja").read_text()
        self.assertIn("knobs=pixel_vector:8 knobs_target=" + TARGET, ninja)
        tuned = "smoe_forward_shared_weighted_tuned_b1_3_c8p_"
        self.assertIn("knobs=dot_channels:2,row_tile:2", ninja)
        header = (build / "kernels" / "smoe_tuned_variants.h").read_text()
        cpu = f"{HOST_CPU['vendor']}|{HOST_CPU['family']}|{HOST_CPU['model']}"
        # Gated kernels, one per routing: each serves both gatings.
        self.assertEqual(header.count('"b1-3_c8+", "dot_channels:2,row_tile:2", "' + TARGET + '", "' + cpu + '"'), 2)
        self.assertNotIn("_unweighted_tuned_", ninja)
        # The fresh configure's own command for one tuned kernel, run with this build's generator
        # (the same sources) rather than building a second generator in the fresh tree.
        name = next(word for word in ninja.split() if word.startswith(tuned) and word.endswith(".h"))[:-2]
        command = next(line for line in ninja.splitlines() if "COMMAND = " in line and f" -n {name} " in line)
        arguments = command.split("smoe_generators ", 1)[1].split()
        out = WORK / "rebuild_kernel"
        out.mkdir(exist_ok=True)
        arguments[arguments.index("-o") + 1] = str(out)
        run([BUILD / "bin" / "smoe_generators", *arguments])
        self.assertTrue((out / f"{name}.h").is_file())

    def test_knobs_reach_their_targets_kernel_only(self):
        """A multi-target build compiles each target with user_context and no_runtime added; the
        knobs must still reach the store's target, and no other."""
        def lowered(target, *knobs):
            out = WORK / "lowered" / "_".join(knobs)
            out.mkdir(parents=True, exist_ok=True)
            run([BUILD / "bin" / "smoe_generators", "-g", "smoe_route_topk", "-f", "route", "-e", "stmt", "-o", out,
                 f"target={target}-user_context-no_runtime", *knobs])
            return (out / "route.stmt").read_text()

        default = lowered(TARGET)
        # The default is 32 pixels per vector; 4 shows in the lowered vector types.
        tuned = lowered(TARGET, "knobs=pixel_vector:4", f"knobs_target={TARGET}")
        self.assertNotEqual(tuned, default)
        self.assertIn("x4", tuned)
        self.assertNotIn("x4", default)
        elsewhere = lowered(TARGET, "knobs=pixel_vector:4", "knobs_target=x86-64-linux-avx-avx2-avx512-avx512_skylake-f16c-fma-sse41")
        self.assertEqual(elsewhere, default)

    def test_corrupt_stale_and_foreign_stores_are_rejected(self):
        cases = {
            "corrupt.json": ("{ not json", "is not a smoe tuned store"),
            "stale.json": (store(halide_version="20.0.0"), "tuned with Halide 20.0.0"),
            "foreign.json": (store(target="arm-64-linux-arm_dot_prod"), "not one of this build's CPU targets"),
            "unknown_op.json": (store(entries=[{"op": "conv", "shape_class": "b4+_c8+", "knobs": {}}]),
                                "no known op"),
            "bad_knob.json": (store(entries=[{"op": "forward", "shape_class": "b4+_c8+", "knobs": {"row_tile": "x"}}]),
                              "not a whole number"),
            "no_cpu.json": (store(cpu=None), "does not record the CPU it was tuned on"),
        }
        for name, (text, why) in cases.items():
            with self.subTest(store=name):
                status, warning = read_store(self.write(name, text))
                self.assertEqual(status, "rejected")
                self.assertIn("rejected", warning)
                self.assertIn(why, warning)
                self.assertIn("The default schedules are used", warning)
        self.assertEqual(read_store(WORK / "missing.json")[0], "rejected")
        self.assertEqual(read_store(self.write("good.json", store()))[:2], ("valid", TARGET))

    def test_a_store_of_another_cpu_is_not_compiled(self):
        other = dict(HOST_CPU, model=HOST_CPU["model"] + 1)
        path = self.write("other_cpu.json", store(cpu=other))
        build = WORK / "other_cpu"
        output = run([CMAKE, "-S", SOURCE, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}",
                      f"-DPython_EXECUTABLE={PYTHON}", f"-DSMOE_TUNED_STORES={path}", "-DSMOE_CUDA=OFF",
                      "-DSMOE_BUILD_TESTS=OFF", "-DSMOE_BUILD_BENCHMARKS=OFF", "-DSMOE_BUILD_EXAMPLES=OFF"])
        self.assertIn("is for another CPU", output)
        self.assertNotIn("_tuned_", (build / "kernels" / "smoe_tuned_variants.h").read_text())

    def test_committed_stores_are_valid(self):
        stores = sorted((SOURCE / "schedules" / "tuned").glob("*.json"))
        self.assertTrue(stores, "no tuned store is committed under schedules/tuned/")
        for path in stores:
            with self.subTest(store=path.name):
                self.assertEqual(read_store(path)[0], "valid")


def entry_target(run_json):
    return json.loads(pathlib.Path(run_json).read_text())["target"]


class TunedKernels(unittest.TestCase):
    def test_lists_the_compiled_variants(self):
        lines = smoe.tuned_kernels()
        for line in lines:
            op, routing, gating, shape_class = line.split()[:4]
            self.assertIn(" cpu=", line)
            self.assertIn(op, ("forward", "backward_data", "backward_weight"))
            self.assertIn(routing, ("shared", "per_sample"))
            self.assertIn(gating, ("unweighted", "weighted"))
            self.assertIn(shape_class, ("b1-3_c1-7", "b1-3_c8+", "b4+_c1-7", "b4+_c8+"))
            self.assertTrue(line.endswith(" active") or "inactive" in line, line)

    def test_tuned_kernels_match_the_reference(self):
        active = [line for line in smoe.tuned_kernels() if line.endswith(" active")]
        if not active:
            self.skipTest("this CPU runs none of the tuned kernels' targets")
        rng = random.Random(5)
        # Every class, every routing variant, with and without damping and the RC loss; small
        # batches also on rows as wide as a vector of pixels or wider, and channels not a multiple
        # of one. The regular kernels of the same shapes too (the tuned ones replace them there).
        for B, C, widths in ((1, 12, (1, 9)), (1, 37, (16, 21)), (2, 19, (16, 40)), (3, 9, (1, 9)), (2, 3, (1, 9)),
                             (6, 16, (1, 9)), (8, 2, (1, 9))):
            for shared in (True, False):
                for weighted in (False, True):
                    case = dict(B=B, C=C, H=rng.randint(2, 7), W=rng.randint(*widths), NE=6, E=3, K=3, F=rng.choice([1, 2]),
                                shared=shared, weighted=weighted, dtype=torch.float32, rc_loss=True, q=0.7,
                                damping=rng.choice([None, 0.1]), rc_weight=1.0, error_scale=None, ties=False,
                                seed=rng.randrange(2**31))
                    for tuned in (True, False):
                        with self.subTest(case=case, tuned=tuned):
                            smoe.set_tuned_kernels(tuned)
                            try:
                                check_case(self, case)
                            finally:
                                smoe.set_tuned_kernels(True)

    def test_target_dependent_knobs_agree_both_ways(self):
        """Knobs whose default depends on the target (the data gradient's tap order and bank padding)
        are built one way only on a given host; the tuner checks both against the defaults' outputs
        on a shape with channel, row and batch tails."""
        settings = ["formulation:1,axpy_taps_outer:1,axpy_row_padding:1", "formulation:1,axpy_taps_outer:2,axpy_row_padding:2"]
        result = subprocess.run([TUNE, "--ops", "backward_data", "--config", "3,20,7,19,12,5,3", "--target", TARGET,
                                 "--rounds", "1"] + [arg for s in settings for arg in ("--compare", s)],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("failed", result.stderr)
        for setting in settings:
            self.assertIn(setting, result.stdout)

    def test_measured_choice_is_cached_and_reused(self):
        cache = WORK / "kernel_cache.tsv"
        cache.unlink(missing_ok=True)
        script = (
            "import torch, smoe\n"
            "from test_ops import reference_forward\n"
            "torch.manual_seed(0)\n"
            "for B, C in ((1, 12), (2, 9), (6, 16)):\n"
            "    x = torch.randn(B, C, 5, 7); w = torch.randn(8, C, 3, 3)\n"
            "    idx, _ = smoe.route_topk(torch.randn(8, 5, 7), 3)\n"
            "    for _ in range(2):\n"
            "        torch.testing.assert_close(smoe.forward(x, w, idx), reference_forward(x, w, idx, None, 1))\n"
            "    xg = x.clone().requires_grad_(); wg = w.clone().requires_grad_()\n"
            "    smoe.spatial_moe(xg, wg, torch.randn(8, 5, 7), 3)[0].sum().backward()\n")
        env = dict(os.environ, SMOE_KERNEL_CACHE=str(cache))
        run([PYTHON, "-c", script], env=env, cwd=pathlib.Path(__file__).parent)
        first = cache.read_text().splitlines()
        keys = [line.split("\t")[0] for line in first]
        self.assertEqual(len(keys), len(set(keys)), "a shape was measured twice")
        cpu = f"{HOST_CPU['vendor']}-{HOST_CPU['family']}-{HOST_CPU['model']}"
        # Filed under the CPU, the build's kernel target (the first of SMOE_CPU_TARGETS it runs) and
        # the kernels' fingerprint (12 hex digits).
        filed = re.compile(re.escape(cpu) +
                           r" x86-64-linux[-a-z0-9_]* kernels [0-9a-f]{12} forward shared gated 7x5x12x1 ")
        self.assertTrue(any(filed.match(key) for key in keys), first)
        variants = {line.split()[3] for line in smoe.kernel_variants()}
        for line in first:
            choice = line.split("\t")[1]
            self.assertTrue(choice == "regular" or choice in variants or
                            re.match(r"^tuned:b[0-9+-]+_c[0-9+-]+:.*@x86-64-linux", choice), line)
        run([PYTHON, "-c", script], env=env, cwd=pathlib.Path(__file__).parent)
        self.assertEqual(cache.read_text().splitlines(), first, "a cached choice was measured again")


if __name__ == "__main__":
    unittest.main()
