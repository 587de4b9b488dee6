"""README stays true: every `dus` command and flag it shows is accepted by the parser, and its
generated blocks (the recipe key table, the SOLAR plan) match what the code prints now."""

import os
import re
import subprocess
import sys
import unittest

DUS = os.environ.get("DUS_BIN", "dus")
SRC = os.environ.get("DUS_SOURCE_DIR", os.getcwd())
sys.path.insert(0, os.path.join(SRC, "scripts"))
import update_readme  # noqa: E402


def readme():
    with open(os.path.join(SRC, "README.md")) as f:
        return f.read()


def commands():
    """Command names as `dus --help` lists them (one or two words)."""
    out = subprocess.run([DUS, "--help"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"^  (\S+(?: \S+)?)\s{2,}", line)
        if m:
            names.append(m.group(1))
    return names


def dus_invocations(text):
    """Every `dus ...` use in code blocks and inline code: (command words, flags)."""
    snippets = re.findall(r"```(?:bash)?\n(.*?)```", text, re.S) + re.findall(r"`(dus [^`]+)`", text)
    found = []
    for snippet in snippets:
        for line in snippet.replace("\\\n", " ").splitlines():
            for m in re.finditer(r"(?:^|[\s/])dus ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", line):
                rest = line[m.start(1):]
                rest = rest.split("|")[0]  # table cells
                found.append((m.group(1), re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", rest)))
    return found


class ReadmeTest(unittest.TestCase):
    def test_every_command_and_flag_exists(self):
        known = commands()
        self.assertIn("train", known)
        seen = 0
        for words, flags in dus_invocations(readme()):
            two = " ".join(words.split()[:2])
            name = two if two in known else words.split()[0]
            if name not in known:
                continue  # prose like "dus itself"
            usage = subprocess.run([DUS, *name.split(), "--help"], capture_output=True, text=True).stdout
            for flag in flags:
                if flag in ("nproc-per-node", "no-python", "nnodes", "node-rank", "master-addr", "master-port",
                            "ntasks-per-node", "gpus-per-node"):
                    continue  # torchrun's and srun's own flags
                with self.subTest(command=name, flag=flag):
                    self.assertIn("--" + flag, usage, f"README shows 'dus {name} --{flag}' but the parser lacks it")
            seen += 1
        self.assertGreater(seen, 15)

    def test_generated_blocks_are_current(self):
        text = readme()
        self.assertEqual(update_readme.render(text, update_readme.blocks(DUS)), text,
                         "README.md is stale: run scripts/update_readme.py")


if __name__ == "__main__":
    unittest.main(verbosity=2)
