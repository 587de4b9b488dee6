"""Our hand-encoded TensorBoard event files, read by the tensorboard package.

`metrics_sample tensorboard DIR` (tests/metrics_sample.cpp) writes, with train/
tensorboard_writer.cpp, the event files of a run killed after step 8 and resumed from its
checkpoint at step 6. Here tensorboard is the judge: every record's framing and CRCs
(TFRecord), every record parses as a tensorflow.Event, and EventAccumulator finds the scalars
with their exact float32 values, steps and wall times, the killed run's orphaned steps 7..8
replaced by the resumed run's (SessionLog START). Run by ctest (DUS_METRICS_SAMPLE_BIN set).
"""

import glob
import os
import struct
import subprocess
import tempfile
import unittest

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

SAMPLE = os.environ.get("DUS_METRICS_SAMPLE_BIN", "metrics_sample")


def f32(x):
    return float(np.float32(x))


def read_records(path):
    """TFRecord framing, checked by hand: len (u64) | crc(len) | data | crc(data)."""
    data = open(path, "rb").read()
    records, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        (len_crc,) = struct.unpack_from("<I", data, at + 8)
        assert len_crc == masked_crc32c(data[at : at + 8]), f"{path}: bad length CRC at {at}"
        payload = data[at + 12 : at + 12 + length]
        (data_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        assert data_crc == masked_crc32c(payload), f"{path}: bad data CRC at {at}"
        records.append(payload)
        at += 12 + length + 4
    assert at == len(data)
    return records


class TensorBoardEventsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = os.path.join(cls.tmp.name, "tb")
        subprocess.run([SAMPLE, "tensorboard", cls.dir], check=True)
        cls.files = sorted(glob.glob(os.path.join(cls.dir, "events.out.tfevents.*")))
        acc = event_accumulator.EventAccumulator(cls.dir, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        cls.acc = acc

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def scalars(self, tag):
        return [(e.step, e.value) for e in self.acc.Scalars(tag)]

    def test_files_are_valid_records_of_events(self):
        self.assertEqual(len(self.files), 2, self.files)  # one per process, in creation order
        for path in self.files:
            name = os.path.basename(path)
            self.assertRegex(name, r"^events\.out\.tfevents\.\d{10}\.")
            events = []
            for payload in read_records(path):
                event = event_pb2.Event()
                event.ParseFromString(payload)
                self.assertEqual(event.SerializeToString(), payload)  # nothing unknown or odd
                events.append(event)
            self.assertEqual(events[0].file_version, "brain.Event:2")
            self.assertGreater(events[0].wall_time, 1.6e9)
        restart = [e for e in map(self._parse, read_records(self.files[1])) if e.HasField("session_log")]
        self.assertEqual(len(restart), 1)
        self.assertEqual(restart[0].session_log.status, event_pb2.SessionLog.START)
        self.assertEqual(restart[0].step, 7)

    @staticmethod
    def _parse(payload):
        event = event_pb2.Event()
        event.ParseFromString(payload)
        return event

    def test_scalars_after_resume(self):
        tags = self.acc.Tags()["scalars"]
        self.assertEqual(
            sorted(tags),
            sorted(["train/loss", "eval/loss", "misc/values", "misc/big_step", "misc/größe"]),
        )
        expected = [(s, f32(0.1 * s + 0.01)) for s in range(0, 7)]
        expected += [(s, f32(100.0 + s)) for s in range(7, 11)]
        self.assertEqual(self.scalars("train/loss"), expected)
        self.assertEqual(self.scalars("eval/loss"), [(0, 5.0), (4, 3.0), (8, 42.0)])

    def test_values_steps_and_wall_times_are_exact(self):
        self.assertEqual(
            self.scalars("misc/values"),
            [(11, f32(0.1)), (12, -3.5), (13, f32(1e-30)), (14, f32(3.4e38))],
        )
        self.assertEqual(self.scalars("misc/big_step"), [(1 << 40, 0.5)])
        self.assertEqual(self.scalars("misc/größe"), [(20, 7.0)])
        walls = [e.wall_time for e in self.acc.Scalars("train/loss")]
        self.assertEqual(walls, [1700000000.0 + s for s in range(7)] + [1700000100.0 + s for s in range(7, 11)])


if __name__ == "__main__":
    unittest.main()
