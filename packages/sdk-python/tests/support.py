"""What every test module shares: the server from the environment and sandboxes that are cleaned up."""

from __future__ import annotations

import os
import unittest
from typing import List, TypeVar, Union, cast

from sandpit import Sandbox

#: Metadata on every sandbox these tests create, so list filters see only theirs.
SUITE = {"suite": "sdk-python"}

T = TypeVar("T", bound=Union[Sandbox, List[Sandbox]])


def require_server() -> None:
    if not os.environ.get("SANDPIT_URL") or not os.environ.get("SANDPIT_API_KEY"):
        raise unittest.SkipTest("SANDPIT_URL and SANDPIT_API_KEY must point at a Sandpit server")


class SandboxTestCase(unittest.TestCase):
    """Creates one sandbox for the class (``template``), kills it and any registered ones at the end."""

    template = "base"
    sandbox: Sandbox
    _extra: List[Sandbox]

    @classmethod
    def setUpClass(cls) -> None:
        require_server()
        cls._extra = []
        cls.sandbox = Sandbox.create(cls.template, timeout_ms=600_000, metadata={**SUITE, "class": cls.__name__})

    @classmethod
    def tearDownClass(cls) -> None:
        for sandbox in [cls.sandbox, *cls._extra]:
            try:
                sandbox.kill()
            except Exception:  # noqa: BLE001 - cleanup must go on past one failure
                pass

    @classmethod
    def track(cls, sandbox: T) -> T:
        """Kills ``sandbox`` (a Sandbox or a list of them) at the end of the class."""
        if isinstance(sandbox, Sandbox):
            cls._extra.append(sandbox)
        else:
            cls._extra.extend(cast(List[Sandbox], sandbox))
        return sandbox
