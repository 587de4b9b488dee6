"""What the repository ships stays usable: every recipe under recipes/ passes `dus recipe check`,
and the demo's shipped base (recipes/demo/trained-base) matches its SHA256SUMS and is the model
its recipes and README say: 4 layers, hidden 64, 447,040 parameters, with a tokenizer of its
vocabulary and special ids."""

import glob
import hashlib
import json
import os
import unittest

from dus_testlib import SRC, run

BASE = os.path.join(SRC, "recipes", "demo", "trained-base")


class ShippedFiles(unittest.TestCase):
    def test_every_recipe_checks(self):
        recipes = sorted(glob.glob(os.path.join(SRC, "recipes", "**", "*.yaml"), recursive=True))
        names = {os.path.relpath(r, os.path.join(SRC, "recipes")) for r in recipes}
        self.assertLessEqual({"solar-10.7b.yaml", "demo/dus.yaml", "demo/pays.yaml",
                              "crossover/continue.yaml"}, names)
        for recipe in recipes:
            with self.subTest(recipe=os.path.relpath(recipe, SRC)):
                proc = run("recipe", "check", os.path.relpath(recipe, SRC), check=False)
                self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_trained_base_matches_its_sums(self):
        with open(os.path.join(BASE, "SHA256SUMS")) as f:
            sums = dict(reversed(line.split()) for line in f if line.strip())
        self.assertEqual(sorted(sums), ["config.json", "model.safetensors", "tokenizer.model"])
        for name, digest in sums.items():
            with open(os.path.join(BASE, name), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, name)

    def test_trained_base_is_the_stated_model(self):
        out = run("inspect", os.path.relpath(BASE, SRC)).stdout
        self.assertIn("layers         4\n", out)
        self.assertIn("hidden         64 (intermediate 176)", out)
        self.assertIn("parameters     447,040", out)
        self.assertIn("(matches the config)", out)
        with open(os.path.join(BASE, "config.json")) as f:
            config = json.load(f)
        info = json.loads(run("tokenizer", "encode", "--tokenizer",
                              os.path.join(BASE, "tokenizer.model"), "--info").stdout)
        self.assertEqual(info["vocab_size"], config["vocab_size"])
        self.assertEqual((info["bos_id"], info["eos_id"]), (config["bos_token_id"], config["eos_token_id"]))


if __name__ == "__main__":
    unittest.main()
