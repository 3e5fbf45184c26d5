"""Reporter: exact lines (shared vectors), shapes, rank-0 gating, flushing, thread safety."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

from stoker_payload import report
from stoker_payload.report import MAX_MARKER_BYTES, Reporter

from ..helpers import VECTORS_FILE, event_problem


def _decode(value):
    """Vectors write non-finite floats as {"$float": "nan" | "inf" | "-inf"} (JSON has none)."""
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _call(reporter: Reporter, call: dict):
    return getattr(reporter, call["fn"])(**_decode(call["args"]))


class FlushCountingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


class ChoppyStream:
    """Writes one character at a time and yields the GIL between them, so that two
    unlocked writers would interleave their lines."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        for ch in text:
            self.parts.append(ch)
            if ch in ',"':
                time.sleep(0)
        return len(text)

    def flush(self) -> None:
        pass


class ProtocolVectorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vectors = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))

    def test_the_file_has_valid_and_invalid_vectors(self):
        self.assertGreater(sum(1 for v in self.vectors if v["valid"]), 10)
        self.assertGreater(sum(1 for v in self.vectors if not v["valid"]), 5)
        names = [v["name"] for v in self.vectors]
        self.assertEqual(len(names), len(set(names)), "vector names are unique")

    def test_the_reporter_emits_exactly_each_valid_line(self):
        for vector in (v for v in self.vectors if v["valid"]):
            with self.subTest(vector["name"]):
                stream = io.StringIO()
                line = _call(Reporter(stream, enabled=True), vector["call"])
                self.assertEqual(line, vector["line"])
                self.assertEqual(stream.getvalue(), vector["line"] + "\n")

    def test_valid_lines_are_one_line_compact_json_with_type_first(self):
        for vector in (v for v in self.vectors if v["valid"]):
            with self.subTest(vector["name"]):
                line = vector["line"]
                self.assertTrue(line.startswith("::stoker:: {\"type\":"))
                self.assertNotIn("\n", line)
                self.assertTrue(line.isascii())
                event = json.loads(line[len("::stoker:: ") :])
                self.assertIsNone(event_problem(event))
                self.assertEqual(next(iter(event)), "type")

    def test_invalid_lines_break_the_schema_and_the_reporter_refuses_their_calls(self):
        for vector in (v for v in self.vectors if not v["valid"]):
            with self.subTest(vector["name"]):
                self.assertTrue(vector["reason"])
                body = vector["line"][len("::stoker::") :].strip()
                try:
                    event = json.loads(body, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
                except ValueError:
                    event = None
                if event is not None:
                    self.assertIsNotNone(event_problem(event), "the Python mirror of the schema rejects it too")
                if "call" in vector:
                    stream = io.StringIO()
                    with self.assertRaises((ValueError, TypeError)):
                        _call(Reporter(stream, enabled=True), vector["call"])
                    self.assertEqual(stream.getvalue(), "", "nothing is written for a refused call")


class ReporterTest(unittest.TestCase):
    def test_each_line_is_flushed(self):
        stream = FlushCountingStream()
        r = Reporter(stream, enabled=True)
        r.progress(1)
        r.metrics(1, loss=0.5)
        self.assertEqual(stream.flushes, 2)
        self.assertEqual(len(stream.getvalue().splitlines()), 2)

    def test_metrics_keep_a_diverged_loss_as_null_and_accept_numeric_scalars(self):
        class Scalar:  # a numpy / 0-d tensor stand-in
            def __float__(self):
                return 0.25

        line = Reporter(io.StringIO(), enabled=True).metrics(
            2, loss=float("nan"), grad=float("-inf"), lr=Scalar(), none=None
        )
        self.assertEqual(line, '::stoker:: {"type":"metrics","step":2,"loss":null,"grad":null,"lr":0.25,"none":null}')

    def test_metric_names_need_not_be_identifiers(self):
        line = Reporter(io.StringIO(), enabled=True).metrics(**{"eval/loss": 0.5})
        self.assertEqual(line, '::stoker:: {"type":"metrics","eval/loss":0.5}')

    def test_calls_that_would_break_the_schema_raise(self):
        r = Reporter(io.StringIO(), enabled=True)
        cases = [
            ("a boolean metric", lambda: r.metrics(ok=True)),
            ("a metric named type", lambda: r.metrics(**{"type": 1})),
            ("a result field named type", lambda: r.result(**{"type": "x"})),
            ("a float step", lambda: r.checkpoint("/a", 2.0)),
            ("a NaN epoch", lambda: r.progress(1, 10, float("nan"))),
            ("a negative epoch", lambda: r.progress(1, 10, -0.5)),
            ("an empty artifact path", lambda: r.artifact("x", "")),
            ("an unserialisable result", lambda: r.result(obj=object())),
        ]
        for name, call in cases:
            with self.subTest(name), self.assertRaises((ValueError, TypeError)):
                call()

    def test_results_are_made_plain_json(self):
        line = Reporter(io.StringIO(), enabled=True).result(
            path=Path("/out/final.pt"), pair=(1, 2), score=float("inf"), nested={"x": [float("nan")]}
        )
        self.assertEqual(
            line, '::stoker:: {"type":"result","path":"/out/final.pt","pair":[1,2],"score":null,"nested":{"x":[null]}}'
        )

    def test_paths_may_be_path_objects(self):
        line = Reporter(io.StringIO(), enabled=True).checkpoint(Path("/out/c.pt"), 3)
        self.assertEqual(line, '::stoker:: {"type":"checkpoint","path":"/out/c.pt","step":3}')

    def test_a_line_over_the_parser_limit_is_refused(self):
        stream = io.StringIO()
        with self.assertRaisesRegex(ValueError, "artifact"):
            Reporter(stream, enabled=True).result(blob="x" * MAX_MARKER_BYTES)
        self.assertEqual(stream.getvalue(), "")

    def test_lines_from_many_threads_never_interleave(self):
        stream = ChoppyStream()
        r = Reporter(stream, enabled=True)
        threads_n, per_thread = 8, 100

        def work(t: int) -> None:
            for i in range(per_thread):
                r.metrics(i, thread=t, loss=i / 7)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = "".join(stream.parts).splitlines()
        self.assertEqual(len(lines), threads_n * per_thread)
        seen = set()
        for line in lines:
            event = json.loads(line[len("::stoker:: ") :])
            seen.add((event["thread"], event["step"]))
        self.assertEqual(len(seen), threads_n * per_thread)

    def test_the_default_stream_is_stdout_at_write_time(self):
        r = Reporter(enabled=True)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            r.log("hello")
        self.assertEqual(captured.getvalue(), '::stoker:: {"type":"log","level":"info","message":"hello"}\n')


class RankGatingTest(unittest.TestCase):
    def tearDown(self):
        report.set_reporter(None)

    def test_only_rank_zero_writes(self):
        cases = [
            ("RANK unset is a single process: rank 0", None, True),
            ("RANK empty counts as unset", "", True),
            ("RANK 0 writes", "0", True),
            ("RANK 1 is silent", "1", False),
            ("RANK 7 is silent", "7", False),
        ]
        for name, rank, writes in cases:
            with self.subTest(name):
                env = {k: v for k, v in os.environ.items() if k != "RANK"}
                if rank is not None:
                    env["RANK"] = rank
                with mock.patch.dict(os.environ, env, clear=True):
                    stream = io.StringIO()
                    r = Reporter(stream)
                    line = r.progress(5, 10)
                self.assertEqual(r.enabled, writes)
                self.assertEqual(stream.getvalue() != "", writes)
                self.assertEqual(line is not None, writes)

    def test_a_silent_rank_still_rejects_bad_calls(self):
        r = Reporter(io.StringIO(), enabled=False)
        with self.assertRaises(ValueError):
            r.progress(-1)

    def test_module_functions_use_the_process_reporter(self):
        stream = io.StringIO()
        report.set_reporter(Reporter(stream, enabled=True))
        report.progress(1, 2)
        report.metrics(1, loss=0.5)
        report.checkpoint("/c.pt", 1)
        report.artifact("a", "/a")
        report.result(ok=True)
        report.log("done", "debug")
        kinds = [json.loads(l[len("::stoker:: ") :])["type"] for l in stream.getvalue().splitlines()]
        self.assertEqual(kinds, ["progress", "metrics", "checkpoint", "artifact", "result", "log"])

    def test_the_process_reporter_reads_rank_on_first_use(self):
        report.set_reporter(None)
        with mock.patch.dict(os.environ, {"RANK": "3"}):
            self.assertFalse(report.get_reporter().enabled)
        report.set_reporter(None)
        with mock.patch.dict(os.environ, {"RANK": "0"}):
            self.assertTrue(report.get_reporter().enabled)


if __name__ == "__main__":
    unittest.main()
