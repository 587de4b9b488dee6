"""docs/ARCHITECTURE.md stays true: every path it names exists, and every source folder of the
repository (a folder with a CMakeLists.txt or C++ sources) is named in it."""

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
