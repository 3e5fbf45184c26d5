"""Cooperative preemption: the first SIGTERM sets a flag, the second kills."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import unittest

from stoker_payload import signals

from ..helpers import PY_DIR, PYTHON, payload_env


class SignalsTest(unittest.TestCase):
    def setUp(self):
        signals.reset()
        signals.install(announce=False)

    def tearDown(self):
        signals.uninstall()
        signals.reset()

    def test_sigterm_sets_the_stop_flag_instead_of_killing(self):
        self.assertFalse(signals.stop_requested())
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not signals.stop_requested() and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs on the main thread between bytecodes
        self.assertTrue(signals.stop_requested())
        self.assertEqual(signals.stop_signal(), signal.SIGTERM)

    def test_request_stop_and_reset(self):
        signals.request_stop()
        self.assertTrue(signals.stop_requested())
        self.assertIsNone(signals.stop_signal())
        signals.reset()
        self.assertFalse(signals.stop_requested())

    def test_sleep_returns_early_when_a_stop_is_requested(self):
        timer = threading.Timer(0.05, signals.request_stop)
        timer.start()
        try:
            began = time.monotonic()
            self.assertFalse(signals.sleep(30))
            self.assertLess(time.monotonic() - began, 20, "sleep was cut short, not slept out")
        finally:
            timer.cancel()

    def test_sleep_sleeps_when_nothing_happens(self):
        self.assertTrue(signals.sleep(0.01))
        self.assertTrue(signals.sleep(0))

    def test_uninstall_restores_the_previous_handler(self):
        signals.uninstall()
        self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)
        signals.install(announce=False)
        self.assertIsNot(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)


class SecondSignalTest(unittest.TestCase):
    def test_a_second_sigterm_kills_with_the_default_action(self):
        script = (
            "import os, signal, time\n"
            "from stoker_payload import signals\n"
            "signals.install()\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(0.05)\n"
            "print('first: stop requested' if signals.stop_requested() else 'first: ignored', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(5)\n"
            "print('survived', flush=True)\n"
        )
        out = subprocess.run(
            [PYTHON, "-c", script], cwd=PY_DIR, env=payload_env(), capture_output=True, text=True, timeout=30
        )
        self.assertEqual(out.returncode, -signal.SIGTERM, out.stderr)
        self.assertIn("first: stop requested", out.stdout)
        self.assertNotIn("survived", out.stdout)
        self.assertIn("SIGTERM received, will checkpoint and stop", out.stderr)


if __name__ == "__main__":
    unittest.main()
