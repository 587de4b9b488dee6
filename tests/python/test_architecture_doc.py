"""docs/ARCHITECTURE.md stays true: every path it names exists, every source folder of the
repository (a folder with a CMakeLists.txt or C++ sources) is named in it, the folders include
each other only in the direction it states, and tests build from libraries only."""

import os
import re
import unittest

SRC = os.environ.get("DUS_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOC = os.path.join(SRC, "docs", "ARCHITECTURE.md")
# What a run writes (named in the data flow), not files of the repository.
RUN_OUTPUTS = {"final/", "recovery.json", "metrics.jsonl", "state.json"}


def named_paths(text):
    """Backticked words that are paths: folder/ or folder/file, or a file name with an extension
    (resolved against the folder named last before it on the same line)."""
    out = []
    for line in text.splitlines():
        folder = None
        for word in re.findall(r"`([^`\s]+)`", line):
            if word in RUN_OUTPUTS or "NAME" in word:  # run outputs; placeholders
                continue
            if "/" in word:
                out.append(word)
                folder = word.rstrip("/") if word.endswith("/") else os.path.dirname(word)
            elif re.fullmatch(r"[\w*.-]+\.(h|cpp|cu|py|sh|md|yaml|json)", word) and "*" not in word:
                out.append(os.path.join(folder, word) if folder else word)
    return out


# The dependency order docs/ARCHITECTURE.md states: what each folder may include besides itself.
ALLOWED = {
    "core": set(),
    "model": {"core"},
    "scaling": {"model", "core"},
    "data": {"core"},
    "train": {"data", "scaling", "model", "core"},
    "experiments": {"train", "data", "scaling", "model", "core"},
    "cli": {"experiments", "train", "data", "scaling", "model", "core"},
}


def project_includes(path):
    with open(path, encoding="utf-8") as f:
        return re.findall(r'^\s*#\s*include\s+"([\w./-]+)"', f.read(), re.M)


class ArchitectureDoc(unittest.TestCase):
    def setUp(self):
        with open(DOC, encoding="utf-8") as f:
            self.text = f.read()

    def test_every_named_path_exists(self):
        paths = named_paths(self.text)
        self.assertGreater(len(paths), 40)
        missing = [p for p in paths if not os.path.exists(os.path.join(SRC, p))]
        self.assertEqual(missing, [], f"docs/ARCHITECTURE.md names paths that do not exist: {missing}")

    def test_every_source_folder_is_named(self):
        folders = set()
        for root, dirs, files in os.walk(SRC):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "demo-out", "runs")]
            rel = os.path.relpath(root, SRC)
            if rel == "." or rel.startswith(("tests", "scripts", "recipes", "docs")):
                continue
            if any(f.endswith((".cpp", ".h", ".cu")) for f in files):
                folders.add(rel + "/")
        self.assertTrue(folders)
        unnamed = sorted(f for f in folders if f"`{f}`" not in self.text)
        self.assertEqual(unnamed, [], f"source folders missing from docs/ARCHITECTURE.md: {unnamed}")

    def test_the_stated_dependency_order(self):
        self.assertIn("`cli` -> `experiments` -> `train` -> `data`, `scaling` -> `model` ->\n`core`", self.text)

    def test_includes_go_one_way(self):
        wrong, checked = [], 0
        for folder, allowed in ALLOWED.items():
            for root, _, files in os.walk(os.path.join(SRC, folder)):
                for name in files:
                    if not name.endswith((".h", ".cpp", ".cu", ".cuh")):
                        continue
                    path = os.path.join(root, name)
                    for inc in project_includes(path):
                        top = inc.split("/")[0]
                        checked += 1
                        if top in ALLOWED and top != folder and top not in allowed:
                            wrong.append(f"{os.path.relpath(path, SRC)} includes {inc}")
        self.assertGreater(checked, 300)
        self.assertEqual(wrong, [], "includes against the dependency order:\n" + "\n".join(wrong))

    def test_tests_link_libraries_only(self):
        # Test executables list their own test sources and link the folders' libraries; a
        # project source compiled into a test would be a second copy of that library.
        with open(os.path.join(SRC, "tests", "CMakeLists.txt"), encoding="utf-8") as f:
            cmake = f.read()
        sources = re.findall(r"(?:\.\./|\$\{PROJECT_SOURCE_DIR\}/)(\w+)/[\w/]+\.(?:cpp|cu)\b", cmake)
        self.assertEqual([s for s in sources if s in ALLOWED], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
