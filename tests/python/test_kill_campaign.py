"""The kill campaign (scripts/kill_campaign.py), short: 6 kill -9 and 6 SIGTERM at random
moments and at the named kill points (inside a save, right after its rename, inside an
evaluation), each followed by `dus resume`; the script asserts that no checkpoint is
half-written, that each resume starts at the newest complete checkpoint, that a SIGTERM exits 0
with a checkpoint, and that the losses, eval records and final weights are bitwise those of
the uninterrupted run. The full campaign: `scripts/kill_campaign.py --kills 50`."""

import os
import subprocess
import sys
import unittest

SRC = os.environ.get("DUS_SOURCE_DIR", os.getcwd())


class KillCampaign(unittest.TestCase):
    def campaign(self, sig):
        proc = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "kill_campaign.py"), "--kills", "6",
                               "--signal", sig, "--steps", "12", "--seed", "3"],
                              capture_output=True, text=True, timeout=600)
        print(proc.stdout[-3000:])
        self.assertEqual(proc.returncode, 0, proc.stdout[-6000:] + proc.stderr[-3000:])
        self.assertIn("mismatches               0", proc.stdout)

    def test_kill_9(self):
        self.campaign("KILL")

    def test_sigterm(self):
        self.campaign("TERM")


if __name__ == "__main__":
    unittest.main()
