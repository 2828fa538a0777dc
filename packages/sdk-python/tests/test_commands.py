import unittest
from typing import List, Tuple

from support import SandboxTestCase

from sandpit import CommandHandle, CommandResult


class CommandsTest(SandboxTestCase):
    def test_run_returns_stdout_stderr_and_exit_code(self) -> None:
        result = self.sandbox.commands.run("echo out; echo err >&2; exit 3")
        self.assertIsInstance(result, CommandResult)
        self.assertEqual((result.stdout, result.stderr, result.exit_code), ("out\n", "err\n", 3))
        self.assertFalse(result.timed_out)
        self.assertTrue(result.command_id)

    def test_argv_cwd_and_env(self) -> None:
        result = self.sandbox.commands.run(
            ["sh", "-c", 'printf "%s %s" "$(pwd)" "$GREETING"'], cwd="/tmp", env={"GREETING": "hé"}
        )
        self.assertEqual(result.stdout, "/tmp hé")

    def test_callbacks_get_output_while_the_command_still_runs(self) -> None:
        # The command waits for a file that only the on_stdout callback writes: without live callbacks
        # it would never get past its wait (and the server's timeout would end it with timed_out).
        gate = "/tmp/py-sdk-gate"
        seen: List[Tuple[str, str]] = []

        def on_stdout(data: str) -> None:
            seen.append(("stdout", data))
            if "waiting" in data:
                self.sandbox.files.write(gate, "go")

        result = self.sandbox.commands.run(
            f"echo waiting; while [ ! -e {gate} ]; do sleep 0.05; done; echo released >&2; echo done",
            timeout=60,
            on_stdout=on_stdout,
            on_stderr=lambda data: seen.append(("stderr", data)),
        )
        self.assertFalse(result.timed_out)
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(result.stdout, "waiting\ndone\n")
        # Each stream in its order; stdout and stderr are two pipes, with no order between them.
        self.assertEqual(seen[0], ("stdout", "waiting\n"))
        self.assertEqual([data for name, data in seen if name == "stdout"], ["waiting\n", "done\n"])
        self.assertEqual([data for name, data in seen if name == "stderr"], ["released\n"])

    def test_timeout_in_seconds_kills_the_command(self) -> None:
        result = self.sandbox.commands.run("sleep 30", timeout=0.5)
        self.assertTrue(result.timed_out)
        self.assertNotEqual(result.exit_code, 0)

    def test_stdin(self) -> None:
        self.assertEqual(self.sandbox.commands.run("tr a-z A-Z", stdin="shout").stdout, "SHOUT")

    def test_background_command_streams_waits_and_is_listed(self) -> None:
        chunks: List[str] = []
        handle = self.sandbox.commands.run(
            "for i in 1 2 3; do echo line$i; done", background=True, on_stdout=chunks.append
        )
        self.assertIsInstance(handle, CommandHandle)
        result = handle.wait()
        self.assertEqual(result.stdout, "line1\nline2\nline3\n")
        self.assertEqual("".join(chunks), result.stdout)
        self.assertEqual(result.exit_code, 0)
        info = self.sandbox.commands.get(handle.command_id)
        self.assertEqual(info.status, "exited")
        self.assertIn(handle.command_id, [c.command_id for c in self.sandbox.commands.list()])

    def test_background_command_killed_and_fed_stdin(self) -> None:
        sleeper = self.sandbox.commands.run("sleep 300", background=True)
        sleeper.kill()
        self.assertEqual(sleeper.wait().exit_code, 137)

        cat = self.sandbox.commands.run("cat", background=True, stdin_open=True)
        cat.send_stdin("abc")
        cat.send_stdin(b"\x00def")
        cat.close_stdin()
        self.assertEqual(cat.wait().stdout, "abc\x00def")


if __name__ == "__main__":
    unittest.main()
