import base64
import unittest
from typing import List

from support import SandboxTestCase

import sandpit
from sandpit import ExecutionError, Result


class CodeTest(SandboxTestCase):
    template = "code-interpreter"

    def test_keeps_variables_and_returns_the_value_as_main_result(self) -> None:
        first = self.sandbox.code.run("counter = 41")
        self.assertEqual(first.status, "ok")
        self.assertTrue(first.context_id)
        results: List[Result] = []
        execution = self.sandbox.code.run("counter + 1", on_result=results.append)
        self.assertEqual(execution.context_id, first.context_id)
        self.assertEqual((execution.status, execution.error, execution.stdout), ("ok", None, []))
        self.assertEqual(execution.text, "42")
        self.assertEqual(results, execution.results)
        self.assertTrue(results[0].is_main_result)

    def test_streams_stdout_live_and_returns_a_figure(self) -> None:
        # The cell waits for a file the on_stdout callback writes: it only ends if the callback ran live.
        gate = "/tmp/py-code-gate"
        printed: List[str] = []

        def on_stdout(text: str) -> None:
            printed.append(text)
            if "waiting" in text:
                self.sandbox.files.write(gate, "go")

        execution = self.sandbox.code.run(
            "import os, time\nprint('waiting', flush=True)\n"
            f"while not os.path.exists({gate!r}):\n    time.sleep(0.05)\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nprint('done')",
            timeout=60,
            on_stdout=on_stdout,
        )
        self.assertEqual(execution.status, "ok")
        self.assertEqual("".join(printed), "waiting\ndone\n")
        self.assertEqual("".join(execution.stdout), "waiting\ndone\n")
        figure = next(r for r in execution.results if r.png)
        self.assertFalse(figure.is_main_result)
        self.assertEqual(base64.b64decode(figure.png or "")[:4], b"\x89PNG")

    def test_an_exception_is_an_execution_error_with_its_traceback(self) -> None:
        errors: List[ExecutionError] = []
        execution = self.sandbox.code.run("raise ValueError('nope')", on_error=errors.append)
        self.assertEqual(execution.status, "error")
        assert execution.error is not None
        self.assertEqual((execution.error.name, execution.error.value), ("ValueError", "nope"))
        self.assertIn("ValueError: nope", execution.error.traceback)
        self.assertEqual(errors, [execution.error])

    def test_timeout_interrupts_the_cell_and_the_context_keeps_its_state(self) -> None:
        self.sandbox.code.run("kept = 'still here'")
        execution = self.sandbox.code.run("import time\nwhile True: time.sleep(0.1)", timeout=1)
        self.assertEqual(execution.status, "timeout")
        self.assertEqual(self.sandbox.code.run("kept").text, "'still here'")

    def test_contexts_in_other_languages_create_list_restart_remove(self) -> None:
        js = self.sandbox.code.create_context(language="javascript", cwd="/tmp")
        self.assertEqual((js.language, js.cwd, js.is_default), ("javascript", "/tmp", False))
        self.sandbox.code.run("let n = 20", context=js)
        self.assertEqual(self.sandbox.code.run("n * 2 + 2", context=js.id).text, "42")
        self.assertIn(js.id, [c.id for c in self.sandbox.code.list_contexts()])

        restarted = self.sandbox.code.restart_context(js)
        self.assertEqual(restarted.id, js.id)
        after = self.sandbox.code.run("typeof n", context=js)
        self.assertEqual(after.text, "'undefined'")

        bash = self.sandbox.code.run("cd /tmp && pwd", language="bash")
        self.assertEqual("".join(bash.stdout), "/tmp\n")

        self.sandbox.code.remove_context(js)
        self.assertNotIn(js.id, [c.id for c in self.sandbox.code.list_contexts()])
        with self.assertRaises(sandpit.NotFoundError) as raised:
            self.sandbox.code.run("1", context=js)
        self.assertEqual(raised.exception.status, 404)


if __name__ == "__main__":
    unittest.main()
