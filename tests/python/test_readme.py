"""Every Python example of README.md runs as written (each in its own interpreter, from the
repository root). The C++ example is built and run by test_install."""
import os
import subprocess
import sys
import unittest

from readme_examples import README, blocks


class ReadmePythonExamples(unittest.TestCase):
    def test_every_python_block_runs(self):
        examples = blocks("python")
        self.assertGreaterEqual(len(examples), 3)
        for number, (_, code) in enumerate(examples):
            with self.subTest(block=number, first_line=code.splitlines()[0]):
                result = subprocess.run([sys.executable, "-c", code], cwd=README.parent, env=os.environ,
                                        capture_output=True, text=True, timeout=600)
                self.assertEqual(result.returncode, 0, f"README block {number} failed:\n{code}\n{result.stderr}")


if __name__ == "__main__":
    unittest.main()
