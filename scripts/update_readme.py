#!/usr/bin/env python3
"""Regenerates README.md's generated blocks from the code: the recipe key table
(`dus recipe keys`) and the SOLAR memory plan (`dus plan`). Usage:
    scripts/update_readme.py [--dus build/dus]
tests/python/test_readme.py checks that README matches what this would write."""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(dus):
    keys = subprocess.run([dus, "recipe", "keys"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    out = {"recipe-keys": keys}
    plan = subprocess.run([dus, "plan", "recipes/solar-10.7b.yaml", "--world-size", "8",
                           "--config", "recipes/configs/mistral-7b-v0.1.json"],
                          capture_output=True, text=True, cwd=ROOT)
    if plan.returncode == 0:
        out["plan-output"] = "```\n" + plan.stdout + "```\n"
    return out


def render(readme, generated):
    for name, text in generated.items():
        pattern = re.compile(r"(<!-- %s:begin -->\n).*?(<!-- %s:end -->)" % (name, name), re.S)
        readme = pattern.sub(lambda m: m.group(1) + text + m.group(2), readme)
    return readme


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dus", default=os.path.join(ROOT, "build", "dus"))
    args = p.parse_args()
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        readme = f.read()
    new = render(readme, blocks(args.dus))
    if new != readme:
        with open(path, "w") as f:
            f.write(new)
        print("README.md updated")
    else:
        print("README.md up to date")


if __name__ == "__main__":
    sys.exit(main())
