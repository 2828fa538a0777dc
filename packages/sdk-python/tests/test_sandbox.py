import unittest

from support import SUITE, SandboxTestCase, require_server

import sandpit
from sandpit import Sandbox, Snapshot


class SandboxTest(SandboxTestCase):
    def test_create_sets_template_env_metadata_and_timeout(self) -> None:
        sandbox = self.track(
            Sandbox.create("base", env={"GREETING": "hi"}, timeout_ms=120_000, metadata={**SUITE, "kind": "env"})
        )
        self.assertRegex(sandbox.id, r"^sbx_[a-z2-7]{20}$")
        self.assertEqual((sandbox.status, sandbox.template), ("running", "base"))
        self.assertEqual(sandbox.metadata, {**SUITE, "kind": "env"})
        self.assertIn("GREETING", sandbox.env_keys)
        self.assertEqual(sandbox.commands.run("echo $GREETING").stdout, "hi\n")
        self.assertIsNotNone(sandbox.expires_at)

    def test_connect_and_list_find_it(self) -> None:
        connected = Sandbox.connect(self.sandbox.id)
        self.assertEqual(connected.id, self.sandbox.id)
        self.assertEqual(connected.commands.run("echo via-connect").stdout, "via-connect\n")
        listed = Sandbox.list(status="running", metadata={"class": "SandboxTest"})
        self.assertEqual([s.id for s in listed], [self.sandbox.id])
        self.assertEqual(Sandbox.list(metadata={"class": "no-such-class"}), [])

    def test_set_timeout_and_set_metadata(self) -> None:
        before = self.sandbox.refresh().expires_at
        self.sandbox.set_timeout(900_000)
        self.assertNotEqual(self.sandbox.expires_at, before)
        merged = self.sandbox.set_metadata({"stage": "review", "class": None})
        self.assertEqual(merged, {**SUITE, "stage": "review"})
        self.sandbox.set_metadata({"class": "SandboxTest", "stage": None})
        self.assertEqual(Sandbox.connect(self.sandbox.id).metadata, {**SUITE, "class": "SandboxTest"})

    def test_pause_and_resume_keep_processes_and_memory(self) -> None:
        # A counter held only in a running process's memory: it continues after the resume.
        sandbox = self.sandbox
        sandbox.files.write("/tmp/counter.sh", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done")
        counter = sandbox.commands.run("sh /tmp/counter.sh", background=True)
        sandbox.commands.run("while [ ! -s /tmp/n ]; do sleep 0.05; done", timeout=30)
        sandbox.pause()
        self.assertEqual(sandbox.status, "paused")
        self.assertEqual(Sandbox.connect(sandbox.id).status, "paused")
        with self.assertRaises(sandpit.ConflictError) as raised:
            sandbox.commands.run("true")
        self.assertEqual(raised.exception.status, 409)
        sandbox.resume()
        self.assertEqual(sandbox.status, "running")
        paused_at = int(sandbox.files.read("/tmp/n"))
        sandbox.commands.run(f"while [ $(cat /tmp/n) -le {paused_at} ]; do sleep 0.05; done", timeout=30)
        self.assertEqual(counter.info().status, "running")
        counter.kill()

    def test_context_manager_kills_the_sandbox(self) -> None:
        with Sandbox.create(metadata={**SUITE, "kind": "with"}, timeout_ms=120_000) as sandbox:
            self.assertEqual(sandbox.commands.run("echo inside").stdout, "inside\n")
        self.assertEqual(Sandbox.connect(sandbox.id).status, "destroyed")
        with self.assertRaises(sandpit.ConflictError) as raised:
            sandbox.commands.run("true")
        self.assertEqual((raised.exception.code, raised.exception.status), ("invalid_state", 409))
        self.assertIn("destroyed", raised.exception.message)
        sandbox.kill()  # killing twice succeeds

    def test_snapshot_and_a_sandbox_created_from_it(self) -> None:
        self.sandbox.files.write("/workspace/before-snapshot.txt", "kept")
        snapshot = self.sandbox.snapshot(name="py-sdk")
        self.assertIsInstance(snapshot, Snapshot)
        self.assertRegex(snapshot.id, r"^snp_")
        self.assertEqual((snapshot.name, snapshot.source_sandbox_id), ("py-sdk", self.sandbox.id))
        self.assertEqual(Snapshot.get(snapshot.id).id, snapshot.id)
        self.assertIn(snapshot.id, [s.id for s in Snapshot.list()])
        self.assertEqual(self.sandbox.refresh().status, "running")

        child = self.track(Sandbox.create(snapshot_id=snapshot.id, metadata={**SUITE, "kind": "child"}))
        self.assertNotEqual(child.id, self.sandbox.id)
        self.assertEqual(child.files.read("/workspace/before-snapshot.txt"), "kept")

        Snapshot.delete(snapshot.id)
        with self.assertRaises(sandpit.NotFoundError):
            Snapshot.get(snapshot.id)

    def test_fork_continues_the_sandbox_in_a_new_one(self) -> None:
        self.sandbox.files.write("/workspace/before-fork.txt", "forked")
        children = self.track(self.sandbox.fork(1))
        self.assertEqual(len(children), 1)
        self.assertNotEqual(children[0].id, self.sandbox.id)
        self.assertEqual(children[0].status, "running")
        self.assertEqual(children[0].files.read("/workspace/before-fork.txt"), "forked")
        self.assertEqual(self.sandbox.refresh().status, "running")


class ErrorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        require_server()

    def test_an_unknown_sandbox_is_sandbox_not_found(self) -> None:
        with self.assertRaises(sandpit.SandboxNotFoundError) as raised:
            Sandbox.connect("sbx_aaaaaaaaaaaaaaaaaaaa")
        error = raised.exception
        self.assertIsInstance(error, sandpit.NotFoundError)
        self.assertEqual((error.code, error.status), ("sandbox_not_found", 404))
        self.assertTrue(error.request_id)

    def test_invalid_fields_raise_validation_error_naming_each_field_and_rule(self) -> None:
        with self.assertRaises(sandpit.ValidationError) as raised:
            Sandbox.create(resources={"vcpus": 99}, timeout_ms=5)
        error = raised.exception
        self.assertEqual((error.code, error.status), ("validation_failed", 400))
        by_field = {issue.field: issue for issue in error.fields}
        self.assertIn("resources.vcpus", by_field)
        self.assertIn("timeoutMs", by_field)
        self.assertEqual(by_field["resources.vcpus"].rule, "too_big")
        self.assertEqual(error.details["fields"][0]["field"], error.fields[0].field)
        self.assertEqual(Sandbox.list(metadata={"kind": "invalid"}), [])

    def test_a_wrong_api_key_is_an_authentication_error(self) -> None:
        with self.assertRaises(sandpit.AuthenticationError) as raised:
            Sandbox.list(api_key="sk_wrong")
        self.assertEqual(raised.exception.status, 401)


if __name__ == "__main__":
    unittest.main()
