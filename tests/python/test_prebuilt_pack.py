"""The kernel pack path (bench/gpu/README.md): the main build's kernels written as a pack, the operator
library and the Python package built from it in a tree of their own without Halide
(-DSMOE_PREBUILT_KERNELS), and the op tests run against that library. A GPU machine builds the same
way against its own torch."""
import os
import pathlib
import shutil
import sys
import tempfile
import unittest

from commands import run

BUILD = pathlib.Path(os.environ["SMOE_BUILD_DIR"])
SOURCE = pathlib.Path(os.environ["SMOE_SOURCE_DIR"])
CMAKE = os.environ["SMOE_CMAKE"]
NINJA = os.environ["SMOE_NINJA"]


class PrebuiltPack(unittest.TestCase):
    def test_library_from_a_pack_passes_the_op_tests(self):
        work = pathlib.Path(tempfile.mkdtemp(prefix="smoe-pack-"))
        try:
            pack, build = work / "pack", work / "build"
            # What the target smoe_kernel_pack runs, without a second ninja in the main build tree.
            run([CMAKE, "-D", f"files={BUILD}/kernel-pack/files.cmake",
                 "-D", f"manifest={BUILD}/kernel-pack/smoe-kernels.cmake", "-D", f"dir={pack}",
                 "-P", SOURCE / "cmake" / "SmoeCopyKernelPack.cmake"])
            self.assertTrue((pack / "lib" / "libsmoe_halide_runtime.a").is_file())
            self.assertTrue((pack / "include" / "smoe_kernels.h").is_file())
            configure = run([CMAKE, "-S", SOURCE, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}",
                             "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}",
                             f"-DSMOE_PREBUILT_KERNELS={pack}"])
            self.assertIn(f"prebuilt kernels from {pack}", configure)
            cache = (build / "CMakeCache.txt").read_text()
            self.assertNotIn("Halide_DIR:", cache)
            run([CMAKE, "--build", build, "-j", str(os.cpu_count() or 2)], timeout=1800)
            self.assertFalse((build / "bin").exists(), "a pack build makes the library and package only")
            env = dict(os.environ, PYTHONPATH=str(build / "python"), SMOE_LIBRARY=str(build / "lib" / "libsmoe_ops.so"))
            run([sys.executable, "-m", "unittest", "-v", "test_ops", "test_cuda"], cwd=SOURCE / "tests" / "python",
                env=env, timeout=900)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
