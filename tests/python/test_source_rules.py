"""Rules the project's code must keep, checked on the sources and on the built libraries.

- No call to std::filesystem::remove_all: libtorch.so exports its own copy of that symbol, which
  wins at link time and crashes (SIGSEGV, exit 139). Project
  code removes trees with dus::remove_tree (core/file_util.h). Checked twice: no call in the
  sources, and no undefined reference to it in any object of the project's static libraries
  (which catches a call however it is spelled: `using namespace`, an alias, a macro).
"""

import glob
import os
import re
import subprocess
import tempfile
import unittest

SRC = os.environ.get("DUS_SOURCE_DIR", os.getcwd())
DUS = os.environ.get("DUS_BIN", os.path.join(SRC, "build", "dus"))
BUILD = os.path.dirname(os.path.dirname(os.path.abspath(DUS)))
CODE_DIRS = ["core", "model", "scaling", "data", "train", "experiments", "cli", "tests"]


def project_sources():
    for d in CODE_DIRS:
        for path in glob.glob(os.path.join(SRC, d, "**", "*"), recursive=True):
            if path.endswith((".cpp", ".h", ".cu", ".cuh")) and os.path.isfile(path):
                yield path


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


class SourceRules(unittest.TestCase):
    def test_no_remove_all_in_the_sources(self):
        offenders = []
        for path in project_sources():
            with open(path, encoding="utf-8", errors="replace") as f:
                if "remove_all" in strip_comments(f.read()):
                    offenders.append(os.path.relpath(path, SRC))
        self.assertEqual(offenders, [], "std::filesystem::remove_all is called; use dus::remove_tree")

    def test_no_remove_all_in_the_built_libraries(self):
        libs = sorted(glob.glob(os.path.join(BUILD, "**", "libdus_*.a"), recursive=True))
        self.assertTrue(libs, f"no project libraries under {BUILD}")
        for lib in libs:
            out = subprocess.run(["nm", "-C", "--undefined-only", lib], capture_output=True, text=True,
                                 check=True).stdout
            calls = [line.strip() for line in out.splitlines() if "remove_all" in line]
            self.assertEqual(calls, [], f"{os.path.relpath(lib, BUILD)} references remove_all")

    def test_the_rules_see_a_hidden_call(self):
        # Both checks must be able to fail: a call behind a namespace alias is found in the
        # source text and, compiled, in the object file nm reads.
        code = "#include <filesystem>\nnamespace fs = std::filesystem;\nvoid f(const fs::path& p) { fs::remove_all(p); }\n"
        self.assertIn("remove_all", strip_comments(code))
        self.assertNotIn("remove_all", strip_comments("// never call remove_all\n/* remove_all */ int x;"))
        with tempfile.TemporaryDirectory() as tmp:
            src, obj = os.path.join(tmp, "call.cpp"), os.path.join(tmp, "call.o")
            with open(src, "w") as f:
                f.write(code)
            subprocess.run(["c++", "-std=c++17", "-c", src, "-o", obj], check=True)
            out = subprocess.run(["nm", "-C", "--undefined-only", obj], capture_output=True, text=True,
                                 check=True).stdout
            self.assertIn("remove_all", out)

if __name__ == "__main__":
    unittest.main()
