"""The Python install: `pip install --no-build-isolation <repository>` into a fresh virtual
environment builds the kernels (scikit-build-core + CMake) and installs the package `smoe` with its
library. Then, from another directory and with no library path set, `import smoe` gives the
modules, the functional op with autograd and torch.ops.smoe, and a short training run learns.

torch, Halide and scikit-build-core come from the project's environment (.venv, the pinned
versions) through a .pth file in the fresh environment instead of a second multi-GB copy. The
packaging is what is tested here, so the install builds a reduced kernel set (float32 only, one
baseline CPU target, no CUDA, no formulation or tuned variants), with the main build's generator
executable: the full set and the generators' build are the main build's, which the rest of the
suite tests. A float64 call into that build must fail with an error that
names the option which would have built it."""
import os
import pathlib
import re
import shutil
import sys
import sysconfig
import unittest

from commands import run

BUILD = pathlib.Path(os.environ["SMOE_BUILD_DIR"])
SOURCE = pathlib.Path(os.environ["SMOE_SOURCE_DIR"])

TRAINING_RUN = r"""
import pathlib, sys, torch, smoe
package = pathlib.Path(smoe.__file__).parent
assert str(package).startswith(sys.prefix), (package, sys.prefix)
assert pathlib.Path(smoe.library_path()) == package / "libsmoe_ops.so", smoe.library_path()
print("package:", package)

torch.manual_seed(0)
# The functional op with autograd, and the ops under torch.ops.smoe.
x = torch.randn(2, 3, 8, 8, requires_grad=True)
weight = torch.randn(5, 3, 3, 3, requires_grad=True)
routing = torch.randn(5, 8, 8, requires_grad=True)
y, indices, _ = smoe.spatial_moe(x, weight, routing, 2)
dense = torch.nn.functional.conv2d(x, weight, padding=1).gather(1, indices.long().expand(2, -1, -1, -1))
print("forward vs dense convolution: max difference", float((y - dense).abs().max()))
y.square().sum().backward()
assert x.grad is not None and weight.grad is not None and routing.grad is not None
assert torch.ops.smoe.route_topk is smoe.route_topk
try:
    smoe.spatial_moe(x.double(), weight.double(), routing.double(), 2)
except RuntimeError as error:
    assert "no kernels for Double" in str(error) and "SMOE_CPU_DTYPES" in str(error), error
else:
    raise AssertionError("a float64 call into a float32-only build returned")

# A short training run of the modules: learn a fixed 3-expert layer from its outputs.
gate = smoe.TensorRoutingGate(experts=3, selected=1, height=16, width=16)
layer = smoe.SpatialMoE2d(1, gate, kernel_size=3)
teacher = smoe.SpatialMoE2d(1, smoe.TensorRoutingGate(experts=3, selected=1, height=16, width=16), kernel_size=3)
optimizer = torch.optim.Adam(list(layer.parameters()), lr=1e-2)
losses = []
for step in range(40):
    xs = torch.rand(16, 1, 16, 16)
    with torch.no_grad():
        target = teacher(xs)
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(layer(xs), target)
    loss.backward()
    optimizer.step()
    losses.append(float(loss))
print(f"loss {losses[0]:.6g} -> {losses[-1]:.6g}; RC loss {float(layer.last_rc_loss):.6g}")
"""


class PipInstall(unittest.TestCase):
    def test_fresh_environment_install_and_training(self):
        work = BUILD / "tests" / "pip"
        venv = work / "venv"
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        python = venv / "bin" / "python"
        site = pathlib.Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
        (site / "smoe_project_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # The project environment's tools (cmake, ninja) on PATH, as in an activated environment.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SMOE_LIBRARY")}
        env["PATH"] = f"{venv / 'bin'}:{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}"
        # The main build's generator executable, imported (Halide's add_halide_generator finds its
        # export): compiling every generator's code again would be most of this test's time.
        reduced = ["SMOE_CUDA=OFF", "SMOE_TUNED=OFF", "SMOE_CPU_FORMULATIONS=OFF", "SMOE_CPU_DTYPES=float32",
                   "SMOE_CPU_TARGETS=x86-64-linux", f"smoe-halide_generators_DIR={BUILD / 'cmake'}"]
        defines = [arg for define in reduced for arg in ("-C", f"cmake.define.{define}")]
        run([python, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
             "-C", f"build-dir={work / 'build'}", *defines, SOURCE], env=env)

        files = run([python, "-m", "pip", "show", "--files", "smoe"], env=env)
        self.assertIn("smoe/libsmoe_ops.so", files)
        self.assertIn("smoe/nn.py", files)

        output = run([python, "-c", TRAINING_RUN], cwd=work, env=env)
        difference = float(re.search(r"max difference ([0-9.eE+-]+)", output)[1])
        self.assertLess(difference, 1e-4, output)
        first, last, rc_loss = map(float, re.search(r"loss (\S+) -> (\S+); RC loss (\S+)", output).groups())
        self.assertLess(last, 0.5 * first, output)
        self.assertGreater(rc_loss, 0.0, output)


if __name__ == "__main__":
    unittest.main()
