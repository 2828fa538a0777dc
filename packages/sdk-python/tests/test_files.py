import builtins
import io
import os
import unittest

from support import SandboxTestCase

import sandpit
from sandpit import EntryInfo


class FilesTest(SandboxTestCase):
    def test_binary_round_trip_keeps_every_byte(self) -> None:
        data = bytes(range(256)) * 4 + os.urandom(256 * 1024) + b"\r\n\x00\xff"
        info = self.sandbox.files.write("/workspace/bin/data.bin", data)
        self.assertEqual((info.path, info.size), ("/workspace/bin/data.bin", len(data)))
        self.assertEqual(self.sandbox.files.read("/workspace/bin/data.bin", format="bytes"), data)
        # The sandbox sees the same bytes.
        digest = self.sandbox.commands.run("sha256sum /workspace/bin/data.bin | cut -d' ' -f1").stdout.strip()
        import hashlib

        self.assertEqual(digest, hashlib.sha256(data).hexdigest())

    def test_text_is_utf8_and_a_file_object_streams(self) -> None:
        self.sandbox.files.write("/workspace/text.txt", "héllo ✓\n")
        self.assertEqual(self.sandbox.files.read("/workspace/text.txt"), "héllo ✓\n")
        self.assertEqual(self.sandbox.commands.run("wc -c < /workspace/text.txt").stdout.strip(), "11")
        self.sandbox.files.write("/workspace/stream.bin", io.BytesIO(b"x" * 100_000))
        self.assertEqual(len(self.sandbox.files.read("/workspace/stream.bin", format="bytes")), 100_000)

    def test_mode(self) -> None:
        self.sandbox.files.write("/workspace/run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
        self.assertEqual(self.sandbox.commands.run("/workspace/run.sh").stdout, "ran\n")

    def test_make_dir_list_exists_and_remove(self) -> None:
        self.sandbox.files.make_dir("/workspace/tree/a/b")
        self.sandbox.files.write("/workspace/tree/a/file.txt", "12345")
        entries = {e.name: e for e in self.sandbox.files.list("/workspace/tree/a")}
        self.assertEqual(sorted(entries), ["b", "file.txt"])
        self.assertIsInstance(entries["file.txt"], EntryInfo)
        self.assertEqual((entries["file.txt"].type, entries["file.txt"].size), ("file", 5))
        self.assertEqual(entries["b"].type, "dir")

        self.assertTrue(self.sandbox.files.exists("/workspace/tree/a/file.txt"))
        self.assertTrue(self.sandbox.files.exists("/workspace/tree/a/b"))
        self.assertFalse(self.sandbox.files.exists("/workspace/tree/a/nope"))
        self.assertFalse(self.sandbox.files.exists("/workspace/no/such/dir/file"))
        self.assertFalse(self.sandbox.files.exists("/workspace/tree/a/file.txt/below"))

        self.sandbox.files.remove("/workspace/tree/a/file.txt")
        self.assertFalse(self.sandbox.files.exists("/workspace/tree/a/file.txt"))
        self.sandbox.files.remove("/workspace/tree", recursive=True)
        self.assertFalse(self.sandbox.files.exists("/workspace/tree"))

    def test_reading_a_missing_file_raises_file_not_found(self) -> None:
        with self.assertRaises(sandpit.FileNotFoundError) as raised:
            self.sandbox.files.read("/workspace/missing.txt")
        error = raised.exception
        self.assertEqual((error.code, error.status), ("file_not_found", 404))
        self.assertIsInstance(error, sandpit.NotFoundError)
        self.assertIsInstance(error, builtins.FileNotFoundError)
        self.assertIn("missing.txt", error.message)


if __name__ == "__main__":
    unittest.main()
