"""The Python heat-diffusion example (examples/heat/train.py): a shortened run learns and writes its
report and pictures, it reproduces smoe-train's figures for the same seed, and a 2-process DDP run
(gloo, CPU) gives the single-process result for the same global batch."""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import unittest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "heat" / "train.py"


def run_example(*flags, out):
    report = os.path.join(out, "report.json")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", out, "--report", report, "--threads", "1", *flags],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"train.py {' '.join(flags)} failed:\n{done.stdout}\n{done.stderr}")
    with open(report) as f:
        return json.load(f), done.stdout


class HeatExampleTest(unittest.TestCase):
    def test_short_run_learns_and_reports(self):
        with tempfile.TemporaryDirectory() as out:
            report, stdout = run_example("--samples", "2000", "--epochs", "4", out=out)
            losses = [float(v) for v in re.findall(r"^epoch +\d+ +loss ([0-9.e+-]+)", stdout, re.M)]
            self.assertEqual(len(losses), 4, stdout)
            self.assertLess(losses[-1], 0.5 * losses[0], stdout)
            self.assertRegex(stdout, r"summary: final within 1%: [0-9.]+%; epochs to reach 99%: ")
            self.assertAlmostEqual(report["within"] * 100,
                                   float(re.search(r"final within 1%: ([0-9.]+)%", stdout).group(1)), places=2)
            for name in ("regions_true.png", "regions_learned.png", "stencils.png"):
                with open(os.path.join(out, name), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    @unittest.skipUnless(os.environ.get("SMOE_TRAIN"), "SMOE_TRAIN (the smoe-train binary) is not set")
    def test_python_and_cpp_examples_agree(self):
        # Same seed, same generator, same initialisation and batch order: the same figures.
        flags = ("--samples", "1000", "--epochs", "2", "--threads", "1")
        with tempfile.TemporaryDirectory() as py, tempfile.TemporaryDirectory() as cpp:
            _, py_out = run_example(*flags, out=py)
            done = subprocess.run([os.environ["SMOE_TRAIN"], *flags, "--out", cpp], capture_output=True, text=True,
                                  timeout=600)
        self.assertEqual(done.returncode, 0, done.stderr)
        epoch_lines = lambda text: re.findall(r"^epoch .*within 1%: +[0-9.]+%", text, re.M)
        self.assertEqual(len(epoch_lines(py_out)), 2, py_out)
        self.assertEqual(epoch_lines(py_out), epoch_lines(done.stdout))
        agreement = lambda text: re.search(r"routing agrees with the true map at ([0-9.]+)%", text).group(1)
        self.assertEqual(agreement(py_out), agreement(done.stdout))

    def test_ddp_with_two_processes_matches_one_process(self):
        flags = ("--samples", "800", "--epochs", "2", "--batch", "32")
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            single, _ = run_example(*flags, out=one)
            ddp, stdout = run_example(*flags, "--processes", "2", out=two)
        self.assertIn("over 2 DDP processes", stdout)
        # The same steps on the same global batches: only the order of float sums differs.
        for a, b in zip(single["weight"], ddp["weight"]):
            self.assertAlmostEqual(a, b, delta=1e-4)
        for a, b in zip(single["routing"], ddp["routing"]):
            self.assertAlmostEqual(a, b, delta=1e-3)
        self.assertAlmostEqual(single["loss"], ddp["loss"], delta=1e-3 * single["loss"])
        self.assertAlmostEqual(single["rc_loss"], ddp["rc_loss"], delta=1e-4)
        self.assertAlmostEqual(single["within"], ddp["within"], delta=2e-3)


if __name__ == "__main__":
    unittest.main()
