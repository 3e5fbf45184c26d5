"""stoker_payload.deepspeed_launch: a gang pod's rendezvous variables (as the kubernetes backend
sets them) become the deepspeed launcher's flags; run through a stand-in `deepspeed` on PATH
that prints the arguments it got and its hostfile, alone and under stoker_fire.external."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from stoker_payload import deepspeed_launch, exit_codes
from stoker_payload.exit_codes import PayloadError

from ..helpers import PYTHON, REPO_ROOT, events, of_type, payload_env

# What node 1 of a 2-node, 8-GPU stage's pod holds (train-job.ts rankEnv).
GANG = {
    "NNODES": "2",
    "NODE_RANK": "1",
    "MASTER_ADDR": "fire-student-a1-0.fire-student-a1",
    "MASTER_PORT": "29500",
    "NPROC_PER_NODE": "8",
    "WORLD_SIZE": "16",
}
SCRIPT = ["llava/train/train_mem.py", "--deepspeed", "scripts/zero3.json", "--output_dir", "/out"]

STAND_IN = """#!{python}
import json, sys
args = sys.argv[1:]
hostfile = next((a.split("=", 1)[1] for a in args if a.startswith("--hostfile=")), None)
print(json.dumps({{"argv": args, "hostfile": open(hostfile).read() if hostfile else None}}))
"""


class MappingTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-ds-launch-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def command(self, env, *launcher_args):
        return deepspeed_launch.deepspeed_command(["deepspeed", *launcher_args, *SCRIPT], env, self.tmp)

    def test_a_gang_node_gets_the_launchers_flags_before_the_script(self):
        got = self.command(GANG)
        hostfile = os.path.join(self.tmp, os.listdir(self.tmp)[0])
        self.assertEqual(
            got,
            [
                "deepspeed",
                "--num_nodes=2",
                "--num_gpus=8",
                "--node_rank=1",
                "--master_addr=fire-student-a1-0.fire-student-a1",
                "--master_port=29500",
                f"--hostfile={hostfile}",
                "--no_ssh",
                *SCRIPT,
            ],
        )
        with open(hostfile, encoding="utf-8") as fh:
            self.assertEqual(fh.read(), "node-0 slots=8\nnode-1 slots=8\n")

    def test_torchruns_pet_names_serve_too(self):
        pet = {f"PET_{k}": v for k, v in GANG.items() if k != "WORLD_SIZE"}
        self.assertEqual(self.command(pet)[1:6], self.command(GANG)[1:6])

    def test_one_node_is_left_alone(self):
        for env in ({}, {**GANG, "NNODES": "1", "NODE_RANK": "0"}):
            self.assertEqual(self.command(env), ["deepspeed", *SCRIPT])
        self.assertEqual(os.listdir(self.tmp), [])

    def test_the_commands_own_options_win(self):
        got = self.command(GANG, "--master_port", "30000", "--num_gpus=4", "--hostfile", "/etc/hosts.ds", "--no_ssh", "--module")
        self.assertEqual(
            got,
            [
                "deepspeed",
                "--master_port",
                "30000",
                "--num_gpus=4",
                "--hostfile",
                "/etc/hosts.ds",
                "--no_ssh",
                "--module",
                "--num_nodes=2",
                "--node_rank=1",
                "--master_addr=fire-student-a1-0.fire-student-a1",
                *SCRIPT,
            ],
        )
        self.assertEqual(os.listdir(self.tmp), [])  # its hostfile, not ours
        # --include/--exclude: the runner refuses --num_nodes/--num_gpus beside them
        included = self.command(GANG, "--include", "node-0:0,1@node-1:0,1")
        self.assertFalse([a for a in included if a.startswith(("--num_nodes", "--num_gpus"))], included)

    def test_what_a_gang_needs_is_checked(self):
        cases = [
            ({"NNODES": "2", "MASTER_ADDR": "m", "NPROC_PER_NODE": "8"}, "NODE_RANK"),
            ({"NNODES": "2", "NODE_RANK": "1", "NPROC_PER_NODE": "8"}, "MASTER_ADDR"),
            ({"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "m"}, "NPROC_PER_NODE"),
            ({**GANG, "NODE_RANK": "2"}, "not below NNODES"),
            ({**GANG, "NNODES": "two"}, "NNODES must be an integer"),
        ]
        for env, words in cases:
            with self.subTest(words=words), self.assertRaises(PayloadError) as caught:
                self.command(env)
            self.assertEqual(caught.exception.code_name, "BAD_CONFIG")
            self.assertIn(words, caught.exception.message)
        with self.assertRaises(PayloadError) as caught:
            deepspeed_launch.deepspeed_command(["torchrun", *SCRIPT], GANG)
        self.assertEqual(caught.exception.code_name, "USAGE")
        self.assertTrue(deepspeed_launch.is_deepspeed(["/usr/local/bin/deepspeed", "x.py"]))


class RunTest(unittest.TestCase):
    """The module and stoker_fire.external, with a stand-in deepspeed first on PATH."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stoker-ds-run-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        bin_dir = os.path.join(self.tmp, "bin")
        os.makedirs(bin_dir)
        launcher = os.path.join(bin_dir, "deepspeed")
        with open(launcher, "w", encoding="utf-8") as fh:
            fh.write(STAND_IN.format(python=PYTHON))
        os.chmod(launcher, os.stat(launcher).st_mode | stat.S_IEXEC)
        self.env = payload_env(**GANG, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]), TMPDIR=self.tmp)

    def run_module(self, *args):
        return subprocess.run([PYTHON, "-m", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def launched(self, stdout):
        return json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))

    def test_the_module_execs_the_launcher_with_the_gangs_flags(self):
        done = self.run_module("stoker_payload.deepspeed_launch", "--", "deepspeed", *SCRIPT)
        self.assertEqual(done.returncode, 0, done.stderr)
        got = self.launched(done.stdout)
        self.assertEqual(got["argv"][:5], ["--num_nodes=2", "--num_gpus=8", "--node_rank=1", "--master_addr=fire-student-a1-0.fire-student-a1", "--master_port=29500"])
        self.assertEqual(got["argv"][-len(SCRIPT) - 1 :], ["--no_ssh", *SCRIPT])
        self.assertEqual(got["hostfile"], "node-0 slots=8\nnode-1 slots=8\n")

    def test_external_maps_a_deepspeed_command_itself(self):
        done = self.run_module("stoker_fire.external", "--", "deepspeed", *SCRIPT[:-1], os.path.join(self.tmp, "out"))
        self.assertEqual(done.returncode, 0, done.stderr)
        got = self.launched(done.stdout)
        self.assertIn("--node_rank=1", got["argv"])
        self.assertIn("--no_ssh", got["argv"])
        (result,) = of_type(events(done.stdout), "result")
        self.assertIn("--node_rank=1", result["command"])
        self.assertTrue(any("deepspeed launcher on a gang's node" in e["message"] for e in of_type(events(done.stdout), "log")))

    def test_errors_are_exit_codes(self):
        self.assertEqual(self.run_module("stoker_payload.deepspeed_launch").returncode, exit_codes.USAGE)
        self.assertEqual(self.run_module("stoker_payload.deepspeed_launch", "--", "torchrun", "x.py").returncode, exit_codes.USAGE)
        self.env["NODE_RANK"] = ""
        done = self.run_module("stoker_payload.deepspeed_launch", "--", "deepspeed", *SCRIPT)
        self.assertEqual(done.returncode, exit_codes.BAD_CONFIG, done.stderr)
        self.assertIn("NODE_RANK", done.stderr)


if __name__ == "__main__":
    unittest.main()
