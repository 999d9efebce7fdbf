"""The C++ install: `cmake --install` of this build, then the README's consumer project (its
CMakeLists.txt and main.cpp, taken from README.md as written) configured with
find_package(SpatialMoE), built and run: forward against a dense convolution, and training steps
through the modules' backward."""
import os
import pathlib
import re
import shutil
import subprocess
import unittest

from commands import run
from readme_examples import named_block

BUILD = pathlib.Path(os.environ["SMOE_BUILD_DIR"])
CMAKE = os.environ["SMOE_CMAKE"]
NINJA = os.environ["SMOE_NINJA"]


class InstalledPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = BUILD / "tests" / "install"
        shutil.rmtree(cls.work, ignore_errors=True)
        cls.prefix = cls.work / "prefix"
        run([CMAKE, "--install", BUILD, "--prefix", cls.prefix])

    def test_installs_library_headers_and_package(self):
        for path in ["lib/libsmoe_ops.so", "include/smoe/smoe_ops.h", "include/smoe/modules.h",
                     "lib/cmake/SpatialMoE/SpatialMoEConfig.cmake",
                     "lib/cmake/SpatialMoE/SpatialMoEConfigVersion.cmake",
                     "lib/cmake/SpatialMoE/SpatialMoETargets.cmake"]:
            self.assertTrue((self.prefix / path).is_file(), path)

    def test_readme_consumer_builds_and_runs(self):
        source = self.work / "consumer"
        source.mkdir(parents=True)
        (source / "CMakeLists.txt").write_text(named_block("consumer/CMakeLists.txt"))
        (source / "main.cpp").write_text(named_block("consumer/main.cpp"))
        build = self.work / "consumer-build"
        # Only the prefix is given: LibTorch comes from the package's config, as a user would get it.
        run([CMAKE, "-S", source, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}",
             "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={self.prefix}"])
        run([CMAKE, "--build", build])
        output = run([build / "train"])
        difference = float(re.search(r"forward vs dense convolution: max difference ([0-9.eE+-]+)", output)[1])
        self.assertLess(difference, 1e-3, output)
        first, last = map(float, re.search(r"loss ([0-9.eE+-]+) -> ([0-9.eE+-]+)", output).groups())
        self.assertLess(last, first, output)
        rc_loss = float(re.search(r"RC loss ([0-9.eE+-]+)", output)[1])
        self.assertGreater(rc_loss, 0.0, output)

    def test_version_mismatch_is_rejected(self):
        source = self.work / "wants_next_major"
        source.mkdir(parents=True)
        (source / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.28)\nproject(wants LANGUAGES CXX)\nfind_package(SpatialMoE 1.0 REQUIRED)\n")
        result = subprocess.run([CMAKE, "-S", source, "-B", source / "build", "-G", "Ninja",
                                 f"-DCMAKE_MAKE_PROGRAM={NINJA}", f"-DCMAKE_PREFIX_PATH={self.prefix}"],
                                capture_output=True, text=True, timeout=300)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("SpatialMoE", result.stderr)
        self.assertIn("0.1.0", result.stderr)


if __name__ == "__main__":
    unittest.main()
