#!/usr/bin/env python3
"""The in-sandbox code server: live interpreters (code contexts) served over HTTP. See README.md here.

Standard library only at import time: Python contexts import jupyter_client when they start, so a sandbox
without it still runs bash and JavaScript contexts.
"""

import codecs
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Interpreters are children of this process: they must never see the server's address or its token.
LISTEN = os.environ.pop("SANDPIT_CODE_LISTEN", "127.0.0.1:49981")
TOKEN = os.environ.pop("SANDPIT_CODE_TOKEN", "")
# Languages whose default context starts with the server, before any cell asks for it (comma-separated).
WARM = [l for l in os.environ.pop("SANDPIT_CODE_WARM", "").split(",") if l]

HERE = os.path.dirname(os.path.abspath(__file__))
LANGUAGES = ("python", "javascript", "bash")
DEFAULT_TIMEOUT_MS = 5 * 60 * 1000
# How long an interrupted interpreter may take to come back before it is restarted (its state is lost).
INTERRUPT_GRACE_S = 5.0
# How long output written before a cell's end may take to arrive after its end marker.
OUTPUT_DRAIN_S = 2.0
POLL_S = 0.05
CONTEXT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Written by the JavaScript and bash drivers to their stdout and stderr after a cell: all of the cell's
# output has been read once it is seen (the cell's number follows it, then a NUL).
SENTINEL = b"\x00\x1bSANDPIT-CELL-END:"


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status, code, message, details=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self):
        error = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def invalid(field, rule, message):
    return ApiError(
        400,
        "validation_failed",
        f"Invalid request: {field}: {message}",
        {"fields": [{"field": field, "rule": rule, "message": message}]},
    )


def unavailable(language, why):
    return ApiError(409, "language_unavailable", f"{language} contexts are not available in this sandbox: {why}")


class Cell:
    """One run of code: where its events go, its deadline, and whether its client is still there."""

    def __init__(self, emit, client_gone, timeout_ms, env):
        self.emit = emit
        self.client_gone = client_gone
        self.timeout_ms = timeout_ms
        self.env = env
        self.started = time.monotonic()
        self.deadline = self.started + timeout_ms / 1000.0

    def stop_reason(self):
        """Why the cell must be interrupted now ('timeout' or 'interrupted'), or None."""
        if self.client_gone():
            return "interrupted"
        if time.monotonic() >= self.deadline:
            return "timeout"
        return None

    def timeout_error(self, state_lost):
        kept = (
            "the interpreter did not stop, so it was restarted: the context's state was lost"
            if state_lost
            else "the context kept its state"
        )
        return {
            "type": "error",
            "name": "TimeoutError",
            "value": f"the cell ran longer than its timeout of {self.timeout_ms} ms and was interrupted; {kept}",
            "traceback": "",
        }

    def end(self, status, execution_count):
        self.emit(
            {
                "type": "end",
                "status": status,
                "executionCount": execution_count,
                "durationMs": round((time.monotonic() - self.started) * 1000, 3),
            }
        )


class Context:
    """A live interpreter. Cells run one at a time, in arrival order (a ticket queue)."""

    def __init__(self, context_id, language, cwd, env, is_default):
        self.id = context_id
        self.language = language
        self.cwd = cwd
        self.env = env
        self.is_default = is_default
        self.created_at = now_iso()
        self.deleted = False
        self._turn = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def describe(self):
        return {
            "id": self.id,
            "language": self.language,
            "cwd": self.cwd,
            "isDefault": self.is_default,
            "createdAt": self.created_at,
        }

    def process_env(self):
        env = dict(os.environ)
        env.update(self.env)
        return env

    def take_turn(self, client_gone=lambda: False):
        """Waits for this caller's turn; False when the client went away while waiting."""
        with self._turn:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._turn.wait(0.2)
                if client_gone():
                    # Keep the queue moving: the ticket is served (as a no-op) when its turn comes.
                    threading.Thread(target=self._skip, args=(ticket,), daemon=True).start()
                    return False
            return True

    def _skip(self, ticket):
        with self._turn:
            while self._serving != ticket:
                self._turn.wait(0.2)
            self._serving += 1
            self._turn.notify_all()

    def end_turn(self):
        with self._turn:
            self._serving += 1
            self._turn.notify_all()

    # Implemented by each language.
    def start(self):
        raise NotImplementedError

    def kill(self):
        """Ends the interpreter now (any thread): a running cell sees it gone."""
        raise NotImplementedError

    def alive(self):
        raise NotImplementedError

    def run(self, code, cell):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def execute(self, code, cell):
        if not self.alive():
            # It exited (e.g. the code ended it): a new one, as a restart would give.
            status = self.exit_status()
            unreported = not self.death_reported
            self.close()
            self.start()
            self.death_reported = False
            if unreported:
                # It ended between cells, so no cell said so: this one does, before its own output.
                notice = (
                    f"the {self.language} interpreter of this context had exited (status {status}) since its"
                    " last cell: this cell runs in a new one, with a fresh state"
                )
                print(f"sandpit code server: context {self.id}: {notice}", file=sys.stderr, flush=True)
                cell.emit({"type": "stderr", "text": f"[sandpit] {notice}\n"})
        self.run(code, cell)

    def exit_status(self):
        """The exit status of the interpreter that ended (None when unknown)."""
        return None

    death_reported = False

    def died(self, cell):
        self.death_reported = True
        cell.emit(
            {
                "type": "error",
                "name": "ContextExited",
                "value": f"the {self.language} interpreter exited during the cell"
                + (" (the context was deleted)" if self.deleted else " (the context was restarted)" if self.restarting else "")
                + "; the next cell starts a new one with a fresh state",
                "traceback": "",
            }
        )
        cell.end("error", None)

    restarting = False


class PythonContext(Context):
    """An IPython kernel (ipykernel) driven through jupyter_client, as Jupyter does."""

    def __init__(self, *args):
        super().__init__(*args)
        self.km = None
        self.kc = None
        self.runtime_dir = None

    def start(self):
        import importlib.util

        missing = [
            package
            for module, package in (("ipykernel", "python3-ipykernel"), ("jupyter_client", "python3-jupyter-client"))
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            raise unavailable(
                "python",
                f"no Jupyter kernel: install {' and '.join(missing)} (the code-interpreter template has them)",
            )
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import NoSuchKernel

        self.runtime_dir = tempfile.mkdtemp(prefix="sandpit-code-python-")
        km = KernelManager(kernel_name="python3", connection_file=os.path.join(self.runtime_dir, "kernel.json"))
        try:
            # History in memory: %history works, and no cell waits on a SQLite write (slow under gVisor).
            km.start_kernel(
                cwd=self.cwd, env=self.process_env(), extra_arguments=["--HistoryManager.hist_file=:memory:"]
            )
        except NoSuchKernel:
            raise unavailable("python", "no python3 Jupyter kernel (Debian: python3-ipykernel)")
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
        except RuntimeError as e:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            raise ApiError(500, "sandbox_failed", f"the python kernel did not start: {e}")
        self.km, self.kc = km, kc

    def alive(self):
        return self.km is not None and self.km.is_alive()

    def exit_status(self):
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "returncode", None)

    def kill(self):
        km = self.km
        if km is None:
            return
        provisioner = getattr(km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                try:
                    process.kill()
                except OSError:
                    pass

    def close(self):
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                pass
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:
                self.kill()
            try:
                self.km.cleanup_resources()
            except Exception:
                pass
        self.km = self.kc = None
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def _quiet(self, code):
        """Runs code silently (no history, no output) and waits for it, e.g. to set a cell's env."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.alive():
            try:
                msg = self.kc.get_iopub_msg(timeout=POLL_S)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    return

    def run(self, code, cell):
        if cell.env:
            self._quiet(
                "import os as __sandpit_os\n"
                f"__sandpit_os.__dict__.setdefault('_sandpit_saved_env', []).append("
                f"{{k: __sandpit_os.environ.get(k) for k in {list(cell.env)!r}}})\n"
                f"__sandpit_os.environ.update({cell.env!r})\n"
                "del __sandpit_os\n"
            )
        msg_id = self.kc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        execution_count = None
        stop = None  # why the cell was interrupted
        interrupted_at = None
        error = None
        while True:
            if stop is None:
                stop = cell.stop_reason()
                if stop is not None:
                    interrupted_at = time.monotonic()
                    try:
                        self.km.interrupt_kernel()
                    except Exception:
                        pass
            elif time.monotonic() - interrupted_at > INTERRUPT_GRACE_S:
                self.kill()  # it ignores interrupts: no polite shutdown either
                self.close()
                self.start()
                if stop == "timeout":
                    cell.emit(cell.timeout_error(state_lost=True))
                cell.end(stop, execution_count)
                return
            if not self.alive():
                self.died(cell)
                return
            try:
                msg = self.kc.get_iopub_msg(timeout=POLL_S)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                cell.emit({"type": "stderr" if content.get("name") == "stderr" else "stdout", "text": content["text"]})
            elif kind in ("execute_result", "display_data", "update_display_data"):
                cell.emit({"type": "result", "isMainResult": kind == "execute_result", "data": content["data"]})
            elif kind == "execute_input":
                execution_count = content.get("execution_count", execution_count)
            elif kind == "error":
                if stop is not None and content.get("ename") == "KeyboardInterrupt":
                    continue
                error = {
                    "type": "error",
                    "name": content.get("ename", "Error"),
                    "value": content.get("evalue", ""),
                    "traceback": ANSI.sub("", "\n".join(content.get("traceback", []))),
                }
                cell.emit(error)
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if cell.env:
            self._quiet(
                "import os as __sandpit_os\n"
                "for __k, __v in __sandpit_os._sandpit_saved_env.pop().items():\n"
                "    if __v is None: __sandpit_os.environ.pop(__k, None)\n"
                "    else: __sandpit_os.environ[__k] = __v\n"
                "del __sandpit_os, __k, __v\n"
            )
        if stop == "timeout":
            cell.emit(cell.timeout_error(state_lost=False))
        cell.end(stop or ("error" if error else "ok"), execution_count)


class StreamSplitter:
    """Decodes a driver's stdout or stderr and finds the end-of-cell sentinels in it."""

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = b""

    def feed(self, data):
        """Returns [('text', str) | ('sentinel', int)] for the bytes read so far."""
        out = []
        buf = self.pending + data
        self.pending = b""
        while buf:
            at = buf.find(SENTINEL)
            if at < 0:
                # Keep back a tail that may be the start of a sentinel split across reads.
                keep = 0
                for n in range(min(len(SENTINEL), len(buf)), 0, -1):
                    if SENTINEL.startswith(buf[-n:]):
                        keep = n
                        break
                text, self.pending = buf[: len(buf) - keep], buf[len(buf) - keep :]
                if text:
                    out.append(("text", self.decoder.decode(text)))
                break
            close = buf.find(b"\x00", at + len(SENTINEL))
            if close < 0:
                if at:
                    out.append(("text", self.decoder.decode(buf[:at])))
                self.pending = buf[at:]
                break
            if at:
                out.append(("text", self.decoder.decode(buf[:at])))
            number = buf[at + len(SENTINEL) : close]
            try:
                out.append(("sentinel", int(number)))
            except ValueError:
                out.append(("text", self.decoder.decode(buf[at : close + 1])))
            buf = buf[close + 1 :]
        return [(k, v) for k, v in out if k == "sentinel" or v]


class DriverContext(Context):
    """An interpreter process driven over pipes: its stdout and stderr are the cells' output, its events
    (results, errors, the end of a cell) come on a separate pipe."""

    def __init__(self, *args):
        super().__init__(*args)
        self.process = None
        self.events = None
        self.cell_number = 0
        self.workdir = None

    def spawn(self, args, event_write_fd, pass_fds, stdin):
        try:
            self.process = subprocess.Popen(
                args,
                cwd=self.cwd,
                env=self.process_env(),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                # Its own process group: an interrupt reaches the interpreter and its foreground children.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise unavailable(self.language, f"{args[0]} is not installed")
        finally:
            for fd in pass_fds:
                os.close(fd)
        self.events = queue.Queue()
        self.cell_number = 0  # a fresh interpreter counts from 1, as a fresh kernel does
        process, events = self.process, self.events
        for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
            threading.Thread(target=self._read_output, args=(name, stream, events), daemon=True).start()

    @staticmethod
    def _read_output(name, stream, events):
        splitter = StreamSplitter()
        fd = stream.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                events.put(("closed", name))
                return
            for kind, value in splitter.feed(data):
                events.put((name, value) if kind == "text" else ("sentinel:" + name, value))

    @staticmethod
    def _read_events(fd, events):
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                try:
                    events.put(("event", json.loads(line)))
                except ValueError:
                    continue
        events.put(("closed", "events"))

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def exit_status(self):
        return self.process.returncode if self.process is not None else None

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                pass

    def interrupt(self):
        try:
            os.killpg(self.process.pid, signal.SIGINT)
        except OSError:
            pass

    def close(self):
        if self.process is not None:
            self.kill()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self.process = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def send(self, number, code, env):
        raise NotImplementedError

    def run(self, code, cell):
        # Output written between cells (background work) belongs to no cell.
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                break
        self.cell_number += 1
        number = self.cell_number
        self.send(number, code, cell.env)
        stop = None
        interrupted_at = None
        ended = None  # the driver's end event
        ended_at = None
        sentinels = set()
        error = None
        while True:
            if ended is not None and (len(sentinels) == 2 or time.monotonic() - ended_at > OUTPUT_DRAIN_S):
                break
            if ended is None:
                if stop is None:
                    stop = cell.stop_reason()
                    if stop is not None:
                        interrupted_at = last_interrupt = time.monotonic()
                        self.interrupt()
                elif time.monotonic() - interrupted_at > INTERRUPT_GRACE_S:
                    self.close()
                    self.start()
                    if stop == "timeout":
                        cell.emit(cell.timeout_error(state_lost=True))
                    cell.end(stop, number)
                    return
                elif self.repeat_interrupt and time.monotonic() - last_interrupt > 0.5:
                    last_interrupt = time.monotonic()
                    self.interrupt()
            try:
                kind, value = self.events.get(timeout=POLL_S)
            except queue.Empty:
                if ended is None and not self.alive():
                    self.died(cell)
                    return
                continue
            if kind in ("stdout", "stderr"):
                cell.emit({"type": kind, "text": value})
            elif kind.startswith("sentinel:"):
                if value == number:
                    sentinels.add(kind)
            elif kind == "event" and value.get("cell") == number:
                if value["type"] == "end":
                    ended, ended_at = value, time.monotonic()
                elif value["type"] == "error":
                    if stop is not None and value.get("interrupted"):
                        continue
                    error = {k: value[k] for k in ("type", "name", "value", "traceback")}
                    cell.emit(error)
                elif value["type"] == "result":
                    cell.emit({"type": "result", "isMainResult": value["isMainResult"], "data": value["data"]})
            elif kind == "closed" and value == "events" and ended is None:
                self.process.wait(5)
                self.died(cell)
                return
        exit_status = ended.get("exitStatus", 0)
        if stop is None and exit_status != 0:
            # A bash cell's status is its last command's, as in a script.
            error = {"type": "error", "name": "ExitCode", "value": f"exit status {exit_status}", "traceback": ""}
            cell.emit(error)
        if stop == "timeout":
            cell.emit(cell.timeout_error(state_lost=False))
        cell.end(stop or ("error" if error else "ok"), number)

    repeat_interrupt = False


class JavaScriptContext(DriverContext):
    """Node.js running js-context.js: one global scope across cells, cells sent on a pipe."""

    def start(self):
        command_read, command_write = os.pipe()
        event_read, event_write = os.pipe()
        try:
            self.spawn(
                ["node", os.path.join(HERE, "js-context.js"), str(command_read), str(event_write)],
                event_write,
                (command_read, event_write),
                subprocess.DEVNULL,
            )
        except BaseException:
            os.close(command_write)
            os.close(event_read)
            raise
        self.commands = os.fdopen(command_write, "wb", buffering=0)
        threading.Thread(target=self._read_events, args=(event_read, self.events), daemon=True).start()

    def close(self):
        commands = getattr(self, "commands", None)
        if commands is not None:
            try:
                commands.close()
            except OSError:
                pass
            self.commands = None
        super().close()

    def send(self, number, code, env):
        line = json.dumps({"cell": number, "code": code, "env": env or {}}) + "\n"
        self.commands.write(line.encode())


class BashContext(DriverContext):
    """A bash (no job control) reading one line per cell on its stdin; each cell's code is a file it sources,
    so cd, variables and functions persist. Its status comes on a separate pipe."""

    # An interrupt while bash waits for a foreground command only runs the trap once that command ends, and
    # a return from a function of the code only leaves that function: interrupt until the cell ends.
    repeat_interrupt = True

    def start(self):
        self.workdir = tempfile.mkdtemp(prefix="sandpit-code-bash-")
        event_read, event_write = os.pipe()
        try:
            self.spawn(["bash", "--noprofile", "--norc"], event_write, (event_write,), subprocess.PIPE)
        except BaseException:
            os.close(event_read)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            raise
        self.event_fd = event_write
        threading.Thread(target=self._read_events, args=(event_read, self.events), daemon=True).start()
        sentinel = "".join(f"\\x{b:02x}" for b in SENTINEL)
        # __sandpit_in_cell: an interrupt returns from the cell's file, never from the driver's own steps.
        init = (
            "__sandpit_in_cell=0\n"
            "trap '[[ $__sandpit_in_cell == 1 ]] && return 130 2>/dev/null' INT\n"
            "__sandpit_done() {\n"
            f"  printf '{sentinel}%s\\x00' \"$1\"; printf '{sentinel}%s\\x00' \"$1\" >&2\n"
            f"  printf '{{\"cell\": %s, \"type\": \"end\", \"exitStatus\": %s}}\\n' \"$1\" \"$2\" >&{event_write}\n"
            "}\n"
        )
        self.process.stdin.write(init.encode())
        self.process.stdin.flush()

    def send(self, number, code, env):
        cell_file = os.path.join(self.workdir, f"cell-{number}.sh")
        with open(cell_file, "w") as f:
            f.write(code)
            if not code.endswith("\n"):
                f.write("\n")
        setup = restore = ""
        if env:
            setup_lines, restore_lines = [], []
            for i, (key, value) in enumerate(env.items()):
                saved = f"__sandpit_saved_{i}"
                setup_lines.append(
                    f"if [[ -v {key} ]]; then {saved}=${{{key}}}; else unset {saved}; fi; export {key}={quote(value)}"
                )
                restore_lines.append(f"if [[ -v {saved} ]]; then {key}=${saved}; else unset {key}; fi")
            setup = os.path.join(self.workdir, f"cell-{number}.setup.sh")
            restore = os.path.join(self.workdir, f"cell-{number}.restore.sh")
            with open(setup, "w") as f:
                f.write("\n".join(setup_lines) + "\n")
            with open(restore, "w") as f:
                f.write("\n".join(restore_lines) + "\n")
            setup, restore = f"source {quote(setup)}; ", f"source {quote(restore)}; "
        line = (
            f"{setup}__sandpit_in_cell=1; source {quote(cell_file)} </dev/null {self.event_fd}>&-; "
            f"__sandpit_status=$?; __sandpit_in_cell=0; {restore}"
            f"__sandpit_done {number} $__sandpit_status; rm -f {quote(self.workdir)}/cell-{number}.*\n"
        )
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()



def quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


CONTEXT_CLASSES = {"python": PythonContext, "javascript": JavaScriptContext, "bash": BashContext}


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.contexts = {}
        self.creating = {}  # default contexts being made: one per language

    def list(self):
        with self.lock:
            return [c.describe() for c in self.contexts.values()]

    def get(self, context_id):
        with self.lock:
            context = self.contexts.get(context_id)
        if context is None:
            language = context_id[len("default-") :] if context_id.startswith("default-") else None
            if language in LANGUAGES:
                return self.default(language)
            raise ApiError(404, "code_context_not_found", f"no code context {context_id} in this sandbox")
        return context

    def create(self, language, cwd, env, context_id=None):
        context = CONTEXT_CLASSES[language](
            context_id or str(uuid.uuid4()), language, cwd, env, context_id is not None
        )
        context.start()
        with self.lock:
            self.contexts[context.id] = context
        return context

    def default(self, language):
        context_id = f"default-{language}"
        with self.lock:
            context = self.contexts.get(context_id)
            if context is not None:
                return context
            creating = self.creating.get(context_id)
            if creating is None:
                creating = self.creating[context_id] = threading.Lock()
        with creating:
            with self.lock:
                context = self.contexts.get(context_id)
            if context is None:
                context = self.create(language, home(), {}, context_id)
        with self.lock:
            self.creating.pop(context_id, None)
        return context

    def delete(self, context_id):
        with self.lock:
            context = self.contexts.pop(context_id, None)
        if context is None:
            raise ApiError(404, "code_context_not_found", f"no code context {context_id} in this sandbox")
        context.deleted = True
        context.kill()
        context.take_turn()
        try:
            context.close()
        finally:
            context.end_turn()

    def restart(self, context_id):
        context = self.get(context_id)
        context.restarting = True
        context.kill()
        context.take_turn()
        try:
            context.close()
            context.restarting = False
            context.start()
        finally:
            context.restarting = False
            context.end_turn()
        return context


def home():
    path = os.path.expanduser("~")
    return path if os.path.isdir(path) else "/"


REGISTRY = Registry()


def parse_env(body, field="env"):
    env = body.get("env")
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise invalid(field, "invalid_type", "must be an object of strings")
    for key, value in env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise invalid(f"{field}.{key}", "invalid_key", "must be a variable name (letters, digits, '_')")
        if not isinstance(value, str):
            raise invalid(f"{field}.{key}", "invalid_type", "must be a string")
    return env


def parse_language(body, required=False):
    language = body.get("language")
    if language is None:
        return None if not required else "python"
    if language not in LANGUAGES:
        raise invalid("language", "invalid_value", f"must be one of {', '.join(LANGUAGES)}")
    return language


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandpit-code"
    # A cell's answer is a few small writes (headers, then one line per event): with Nagle's algorithm each
    # waits for the ACK of the one before, which the client delays by up to 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def do_DELETE(self):
        self.handle_request("DELETE")

    def handle_request(self, method):
        try:
            if self.headers.get("Authorization", "") != f"Bearer {TOKEN}" or not TOKEN:
                self.read_body()
                raise ApiError(401, "unauthorized", "missing or wrong bearer token")
            body = self.read_body()
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            parts = path.strip("/").split("/")
            if method == "GET" and path == "/health":
                return self.send_json(200, {"ok": True})
            if path == "/contexts":
                if method == "GET":
                    return self.send_json(200, {"contexts": REGISTRY.list()})
                if method == "POST":
                    return self.create_context(body)
            if len(parts) >= 2 and parts[0] == "contexts":
                context_id = parts[1]
                if not CONTEXT_ID.match(context_id):
                    raise ApiError(404, "code_context_not_found", f"no code context {context_id} in this sandbox")
                if len(parts) == 2 and method == "DELETE":
                    REGISTRY.delete(context_id)
                    return self.send_json(204, None)
                if len(parts) == 3 and parts[2] == "restart" and method == "POST":
                    return self.send_json(200, REGISTRY.restart(context_id).describe())
            if path == "/execute" and method == "POST":
                return self.execute(body)
            raise ApiError(404, "not_found", f"no route {method} {path}")
        except ApiError as e:
            self.send_json(e.status, e.body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc()
            self.send_json(500, ApiError(500, "internal", f"code server error: {e}").body())

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid("(body)", "invalid_json", "must be JSON")
        if not isinstance(body, dict):
            raise invalid("(body)", "invalid_type", "must be an object")
        return body

    def send_json(self, status, body):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def create_context(self, body):
        language = parse_language(body, required=True)
        cwd = body.get("cwd")
        if cwd is None:
            cwd = home()
        elif not isinstance(cwd, str) or not cwd.startswith("/"):
            raise invalid("cwd", "invalid_string", "must be an absolute path")
        elif not os.path.isdir(cwd):
            raise invalid("cwd", "not_a_directory", f"{cwd} is not a directory in the sandbox")
        env = parse_env(body)
        context = REGISTRY.create(language, cwd, env)
        self.send_json(201, context.describe())

    def client_gone(self):
        """True once the client closed its connection (it aborted the cell)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def execute(self, body):
        code = body.get("code")
        if not isinstance(code, str):
            raise invalid("code", "invalid_type", "must be a string")
        language = parse_language(body)
        context_id = body.get("contextId")
        if context_id is not None and language is not None:
            raise invalid("contextId", "custom", "give either contextId or language, not both")
        if context_id is not None and (not isinstance(context_id, str) or not CONTEXT_ID.match(context_id)):
            raise invalid("contextId", "invalid_string", "must be 1-64 letters, digits, '-' or '_'")
        env = parse_env(body)
        timeout_ms = body.get("timeoutMs", DEFAULT_TIMEOUT_MS)
        if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or timeout_ms < 1:
            raise invalid("timeoutMs", "too_small", "must be a positive number of milliseconds")
        context = REGISTRY.get(context_id) if context_id is not None else REGISTRY.default(language or "python")

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        gone = {"value": False}

        def emit(event):
            if gone["value"]:
                return
            data = (json.dumps(event) + "\n").encode()
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            except OSError:
                gone["value"] = True

        def client_gone():
            if not gone["value"] and self.client_gone():
                gone["value"] = True
            return gone["value"]

        emit({"type": "start", "contextId": context.id})
        if context.take_turn(client_gone):
            try:
                if context.deleted:
                    raise ApiError(404, "code_context_not_found", f"the code context {context.id} was deleted")
                context.execute(code, Cell(emit, client_gone, timeout_ms, env))
            except ApiError as e:
                emit({"type": "error", "name": "ContextUnavailable", "value": e.message, "traceback": ""})
                emit({"type": "end", "status": "error", "executionCount": None, "durationMs": 0})
            finally:
                context.end_turn()
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        if gone["value"]:
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def warm_up():
    """Starts the default contexts of WARM; a cell that comes meanwhile waits for its context to be ready."""
    for language in WARM:
        if language in LANGUAGES:
            try:
                REGISTRY.default(language)
            except Exception:
                traceback.print_exc()  # the first cell in that language tries again and says why


def main():
    host, _, port = LISTEN.rpartition(":")
    server = Server((host or "0.0.0.0", int(port)), Handler)
    # Handled, not ignored: a signal ignored here would stay ignored in the interpreters (exec keeps an
    # ignored disposition), and bash cannot trap an interrupt it inherited as ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    threading.Thread(target=warm_up, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        for context in list(REGISTRY.contexts.values()):
            context.kill()


if __name__ == "__main__":
    main()
