"""stoker_payload.server: serve() driven in-process with a fake stdin and a captured
Reporter stream, plus one real process for stdin pipes and SIGTERM."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from typing import Any, Sequence

from stoker_payload import exit_codes, signals
from stoker_payload.exit_codes import PayloadError
from stoker_payload.report import Reporter
from stoker_payload.server import FatalError, JsonlWriter, ShardContext, parse_request, read_jsonl, serve, RequestError

from ..helpers import PYTHON, of_type, payload_env
from ..server_helpers import ServerProcess, server_events, shard, write_jsonl


# -- in-process ---------------------------------------------------------------------------


def copy_handler(request, ctx: ShardContext):
    """Copies each record with an extra field; the item count comes from the writer."""
    records = list(ctx.read_jsonl())
    with ctx.writer() as out:
        for done, (line, record) in enumerate(records, 1):
            out.write({**record, "line": line, "attempt": ctx.attempt, "state": ctx.state})
            ctx.progress(done, len(records))
    return None


class ServeTest(unittest.TestCase):
    def setUp(self):
        signals.reset()
        self.tmp = tempfile.mkdtemp(prefix="stoker-server-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.good = write_jsonl(self.path("good.jsonl"), [{"n": 1}, {"n": 2}, {"n": 3}])
        self.loads = 0

    def tearDown(self):
        signals.reset()

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def load(self):
        self.loads += 1
        return "model"

    def serve(self, requests: Sequence[Any], handler=copy_handler, *, load=None, eof: bool = True):
        """(exit code, events, stderr text) of serve() over `requests` (dicts or raw lines)."""
        lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
        stdin = io.StringIO("".join(line + "\n" for line in lines))
        stream, err = io.StringIO(), io.StringIO()
        code = serve(
            handler,
            load=load if load is not None else self.load,
            stdin=stdin,
            reporter=Reporter(stream, enabled=True),
            stderr=err,
            handle_signals=False,
        )
        return code, server_events(stream.getvalue()), err.getvalue()

    def answers(self, evts):
        return [e for e in evts if e["type"] in ("done", "failed")]

    def test_ready_comes_once_after_the_load_metrics_and_load_runs_once(self):
        code, evts, _ = self.serve([shard("a", self.good, self.path("a.out")), shard("b", self.good, self.path("b.out"))])
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertEqual(self.loads, 1)
        self.assertEqual([e["type"] for e in evts[:2]], ["metrics", "ready"])
        self.assertIn("loadSeconds", evts[0])
        self.assertEqual(len(of_type(evts, "ready")), 1)
        self.assertEqual(len([e for e in evts if "loadSeconds" in e]), 1)
        self.assertEqual(self.answers(evts), [{"type": "done", "id": "a", "items": 3}, {"type": "done", "id": "b", "items": 3}])

    def test_done_comes_after_the_output_is_written(self):
        _, evts, _ = self.serve([shard("a", self.good, self.path("sub/a.out"), attempt=2)])
        lines = [json.loads(line) for line in Path(self.path("sub/a.out")).read_text().splitlines()]
        self.assertEqual(lines, [{"n": n, "line": n, "attempt": 2, "state": "model"} for n in (1, 2, 3)])
        progress = of_type(evts, "progress")
        self.assertEqual(progress[0]["step"], 1)
        self.assertEqual(progress[-1], {"type": "progress", "step": 3, "totalSteps": 3})
        kinds = [e["type"] for e in evts]
        self.assertLess(kinds.index("progress"), kinds.index("done"))
        self.assertIn("shardSeconds", evts[-1], "shard metrics follow done")

    def test_a_returned_count_is_the_items(self):
        def handler(request, ctx):
            ctx.writer().write({"x": 1})
            return 7

        _, evts, _ = self.serve([shard("a", self.good, self.path("a.out"))], handler)
        self.assertEqual(self.answers(evts), [{"type": "done", "id": "a", "items": 7}])

    def test_a_malformed_input_line_is_BAD_DATA_with_its_line_number(self):
        bad = write_jsonl(self.path("bad.jsonl"), [{"n": 1}, "", '{"n": 3', {"n": 4}])
        code, evts, err = self.serve([shard("bad", bad, self.path("bad.out")), shard("next", self.good, self.path("next.out"))])
        self.assertEqual(code, exit_codes.SUCCESS)
        failed, done = self.answers(evts)
        self.assertEqual((failed["type"], failed["id"], failed["reason"]), ("failed", "bad", "BAD_DATA"))
        self.assertTrue(failed["message"].startswith("input line 3: not JSON"), failed["message"])
        self.assertNotIn("Traceback", err, "a PayloadError is an answer, not a crash")
        self.assertFalse(os.path.exists(self.path("bad.out")), "a failed shard leaves no output")
        self.assertEqual(done, {"type": "done", "id": "next", "items": 3})

    def test_a_line_that_is_not_an_object_and_a_missing_input(self):
        not_object = write_jsonl(self.path("list.jsonl"), [{"n": 1}, [1, 2]])
        _, evts, _ = self.serve(
            [shard("list", not_object, self.path("l.out")), shard("missing", self.path("nope.jsonl"), self.path("m.out"))]
        )
        first, second = self.answers(evts)
        self.assertEqual(first["reason"], "BAD_DATA")
        self.assertEqual(first["message"], "input line 2: expected a JSON object, got list")
        self.assertEqual(second["reason"], "MISSING_INPUT")
        self.assertIn("nope.jsonl", second["message"])

    def test_an_exception_in_the_handler_is_FAILURE_and_the_next_shard_still_runs(self):
        def handler(request, ctx):
            if request.id == "boom":
                ctx.writer().write({"half": True})
                return 1 // 0
            return copy_handler(request, ctx)

        code, evts, err = self.serve([shard("boom", self.good, self.path("boom.out")), shard("ok", self.good, self.path("ok.out"))], handler)
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertEqual(
            self.answers(evts),
            [
                {"type": "failed", "id": "boom", "reason": "FAILURE", "message": "ZeroDivisionError: integer division or modulo by zero"},
                {"type": "done", "id": "ok", "items": 3},
            ],
        )
        self.assertIn("Traceback", err)
        self.assertIn("ZeroDivisionError", err)
        self.assertFalse(os.path.exists(self.path("boom.out")), "the half-written output is removed")
        self.assertTrue(os.path.exists(self.path("ok.out")))

    def test_a_PayloadError_keeps_its_reason(self):
        def handler(request, ctx):
            raise PayloadError("TEMPORARY", "the bucket is busy")

        _, evts, _ = self.serve([shard("t", self.good, self.path("t.out"))], handler)
        self.assertEqual(self.answers(evts), [{"type": "failed", "id": "t", "reason": "TEMPORARY", "message": "the bucket is busy"}])

    def test_a_missing_module_is_MISSING_DEPENDENCY(self):
        def handler(request, ctx):
            import stoker_no_such_module  # noqa: F401

        _, evts, _ = self.serve([shard("m", self.good, self.path("m.out"))], handler)
        (failed,) = self.answers(evts)
        self.assertEqual(failed["reason"], "MISSING_DEPENDENCY")
        self.assertIn("stoker_no_such_module", failed["message"])

    def test_MemoryError_answers_then_stops_the_server(self):
        def handler(request, ctx):
            raise MemoryError("cannot allocate")

        code, evts, _ = self.serve([shard("a", self.good, self.path("a.out")), shard("b", self.good, self.path("b.out"))], handler)
        self.assertEqual(code, exit_codes.FAILURE)
        self.assertEqual(self.answers(evts), [{"type": "failed", "id": "a", "reason": "FAILURE", "message": "MemoryError: cannot allocate"}])

    def test_a_FatalError_answers_then_exits_with_its_code(self):
        def handler(request, ctx):
            raise FatalError("TEMPORARY", "the device is gone")

        code, evts, _ = self.serve([shard("a", self.good, self.path("a.out")), shard("b", self.good, self.path("b.out"))], handler)
        self.assertEqual(code, exit_codes.TEMPORARY)
        self.assertEqual(self.answers(evts), [{"type": "failed", "id": "a", "reason": "TEMPORARY", "message": "the device is gone"}])

    def test_a_bad_item_count_is_FAILURE(self):
        _, evts, _ = self.serve([shard("a", self.good, self.path("a.out"))], lambda request, ctx: "three")
        (failed,) = self.answers(evts)
        self.assertEqual(failed["reason"], "FAILURE")
        self.assertIn("item count", failed["message"])

    def test_a_handler_that_writes_nothing_gets_an_empty_output(self):
        _, evts, _ = self.serve([shard("a", self.good, self.path("a.out"))], lambda request, ctx: 0)
        self.assertEqual(self.answers(evts), [{"type": "done", "id": "a", "items": 0}])
        self.assertEqual(Path(self.path("a.out")).read_text(), "")
        _, evts, _ = self.serve([shard("b", self.good, self.path("b.out"))], lambda request, ctx: 2)
        self.assertEqual(self.answers(evts)[0]["reason"], "FAILURE", "items reported but no file")

    def test_malformed_request_lines_are_warned_and_skipped(self):
        requests = [
            "this is not json",
            "[1, 2]",
            "",
            {"type": "bogus"},
            {"type": "shard", "input": self.good, "output": self.path("x.out")},  # no id: nobody to answer
            shard("a", self.good, self.path("a.out")),
        ]
        code, evts, _ = self.serve(requests)
        self.assertEqual(code, exit_codes.SUCCESS)
        warnings = [e for e in of_type(evts, "log") if e["level"] == "warn"]
        self.assertEqual(len(warnings), 4, warnings)
        self.assertIn("not JSON", warnings[0]["message"])
        self.assertIn("expected a JSON object", warnings[1]["message"])
        self.assertIn("unknown request type 'bogus'", warnings[2]["message"])
        self.assertIn("id must be a non-empty string", warnings[3]["message"])
        self.assertEqual(self.answers(evts), [{"type": "done", "id": "a", "items": 3}])

    def test_a_shard_request_with_an_id_but_bad_fields_is_answered(self):
        code, evts, _ = self.serve([{"type": "shard", "id": "x", "input": self.good, "attempt": 0}, shard("a", self.good, self.path("a.out"))])
        self.assertEqual(code, exit_codes.SUCCESS)
        failed, done = self.answers(evts)
        self.assertEqual((failed["id"], failed["reason"]), ("x", "BAD_CONFIG"))
        self.assertIn("output must be a non-empty path", failed["message"])
        self.assertIn("attempt must be an integer >= 1", failed["message"])
        self.assertEqual(done["id"], "a")

    def test_shutdown_stops_before_later_requests(self):
        code, evts, _ = self.serve([shard("a", self.good, self.path("a.out")), {"type": "shutdown"}, shard("b", self.good, self.path("b.out"))])
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertEqual([e["id"] for e in self.answers(evts)], ["a"])
        self.assertFalse(os.path.exists(self.path("b.out")))

    def test_eof_with_no_requests_is_a_clean_exit(self):
        code, evts, _ = self.serve([])
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertEqual([e["type"] for e in evts], ["metrics", "ready"])

    def test_a_stop_request_finishes_the_current_shard_then_stops(self):
        def handler(request, ctx):
            signals.request_stop()  # what SIGTERM does
            self.assertTrue(ctx.stop_requested())
            return copy_handler(request, ctx)

        code, evts, _ = self.serve([shard("a", self.good, self.path("a.out")), shard("b", self.good, self.path("b.out"))], handler)
        self.assertEqual(code, exit_codes.SUCCESS)
        self.assertEqual(self.answers(evts), [{"type": "done", "id": "a", "items": 3}])

    def test_an_error_in_load_propagates_without_ready(self):
        def load():
            raise PayloadError("UNKNOWN_MODEL", "no such model: tiny-42")

        with self.assertRaises(PayloadError) as caught:
            self.serve([shard("a", self.good, self.path("a.out"))], load=load)
        self.assertEqual(caught.exception.code_name, "UNKNOWN_MODEL")


class PiecesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-server-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_read_jsonl_numbers_lines_from_one_and_skips_blank_ones(self):
        path = write_jsonl(os.path.join(self.tmp, "in.jsonl"), [{"a": 1}, "   ", {"a": 3}])
        self.assertEqual(list(read_jsonl(path)), [(1, {"a": 1}), (3, {"a": 3})])

    def test_read_jsonl_rejects_bytes_that_are_not_utf8(self):
        path = os.path.join(self.tmp, "in.jsonl")
        Path(path).write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
        with self.assertRaises(PayloadError) as caught:
            list(read_jsonl(path))
        self.assertEqual(caught.exception.code_name, "BAD_DATA")
        self.assertTrue(caught.exception.message.startswith("input line 2: not UTF-8"))

    def test_the_writer_writes_compact_utf8_lines_and_refuses_nan(self):
        path = os.path.join(self.tmp, "deep", "out.jsonl")
        with JsonlWriter(path) as out:
            out.write({"text": "héllo", "n": 1})
            with self.assertRaises(ValueError):
                out.write({"score": float("nan")})
        self.assertTrue(out.closed)
        self.assertEqual(out.items, 1)
        self.assertEqual(Path(path).read_text(encoding="utf-8"), '{"text":"héllo","n":1}\n')

    def test_parse_request(self):
        self.assertIsNone(parse_request("  \n"))
        self.assertEqual(parse_request('{"type":"shutdown"}'), {"type": "shutdown"})
        req = parse_request('{"type":"shard","id":"t1","input":"/in","output":"/out"}')
        self.assertEqual((req.id, req.input, req.output, req.attempt, dict(req.params)), ("t1", "/in", "/out", 1, {}))
        with self.assertRaises(RequestError) as caught:
            parse_request('{"type":"shard","id":"t2","input":"/in","output":"/out","params":[]}')
        self.assertEqual(caught.exception.id, "t2")


# -- a real process: stdin pipe, SIGTERM ----------------------------------------------------

_SLOW_SERVER = textwrap.dedent(
    """
    import sys
    from stoker_payload import entrypoint, signals
    from stoker_payload.server import serve

    def handle(request, ctx):
        ctx.progress(0, 1, force=True)
        signals.sleep(float(ctx.params.get("sleep", 0)))  # cut short by SIGTERM
        ctx.writer().write({"id": request.id, "stopped": ctx.stop_requested()})
        return 1

    entrypoint.run_main(lambda: serve(handle, poll_interval=0.05))
    """
)


class ServerProcessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-server-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.server = ServerProcess([PYTHON, "-c", _SLOW_SERVER], payload_env())
        self.addCleanup(self.server.kill)
        self.server.wait_for(lambda e: e["type"] == "ready", timeout=30, what="ready")
        self.input = write_jsonl(os.path.join(self.tmp, "in.jsonl"), [{"n": 1}])

    def test_requests_over_a_pipe_then_eof(self):
        out = os.path.join(self.tmp, "a.out")
        self.server.send(shard("a", self.input, out))
        done = self.server.wait_for(lambda e: e["type"] in ("done", "failed"), timeout=30, what="done")
        self.assertEqual(done, {"type": "done", "id": "a", "items": 1})
        self.assertEqual(json.loads(Path(out).read_text()), {"id": "a", "stopped": False})
        self.server.close_stdin()
        self.assertEqual(self.server.wait(timeout=30), exit_codes.SUCCESS)

    def test_sigterm_while_idle_exits_cleanly(self):
        began = time.monotonic()
        self.server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=30), exit_codes.SUCCESS, self.server.stderr)
        self.assertLess(time.monotonic() - began, 10)

    def test_sigterm_during_a_shard_finishes_it_and_serves_no_more(self):
        out = os.path.join(self.tmp, "slow.out")
        self.server.send(shard("slow", self.input, out, sleep=60))
        self.server.wait_for(lambda e: e["type"] == "progress", timeout=30, what="the shard to start")
        self.server.send(shard("next", self.input, os.path.join(self.tmp, "next.out")))
        self.server.proc.send_signal(signal.SIGTERM)
        done = self.server.wait_for(lambda e: e["type"] in ("done", "failed"), timeout=30, what="done")
        self.assertEqual(done, {"type": "done", "id": "slow", "items": 1})
        self.assertEqual(json.loads(Path(out).read_text()), {"id": "slow", "stopped": True})
        self.assertEqual(self.server.wait(timeout=30), exit_codes.SUCCESS, self.server.stderr)
        self.assertEqual([e["id"] for e in server_events(self.server.output) if e["type"] in ("done", "failed")], ["slow"])


if __name__ == "__main__":
    unittest.main()
