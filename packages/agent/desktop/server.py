#!/usr/bin/env python3
"""The in-sandbox desktop server: the display, screenshots, mouse, keyboard and windows over HTTP.

See README.md here. Standard library, python3-xlib and PIL (python3-pil) only; typing and key combos go
through xdotool. Characters without a key are first bound here to spare keycodes, which stay bound: xdotool
would bind one for the moment it types it, and an application that reads the keystroke before it has
reloaded the changed keymap sees no character (Chromium dropped the first "é" of "héllo" that way).
"""

import io
import json
import os
import shutil
import subprocess
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from PIL import Image
from Xlib import X, XK, display, error as xerror
from Xlib.ext import xtest
from Xlib.protocol import event as xevent

from shm_capture import ShmCapture, ShmUnavailable

# Children (Xvfb, the session, launched applications) must never see the server's address or its token.
LISTEN = os.environ.pop("SANDPIT_DESKTOP_LISTEN", "127.0.0.1:49980")
TOKEN = os.environ.pop("SANDPIT_DESKTOP_TOKEN", "")
WIDTH = int(os.environ.pop("SANDPIT_DESKTOP_WIDTH", "1024"))
HEIGHT = int(os.environ.pop("SANDPIT_DESKTOP_HEIGHT", "768"))
DPI = int(os.environ.pop("SANDPIT_DESKTOP_DPI", "96"))
DISPLAY = ":0"
DISPLAY_TIMEOUT_S = 20.0
WM_TIMEOUT_S = 60.0
POLL_S = 0.05
# PNG at zlib level 1: a screen of flat colours compresses nearly as well as at 6, in a fraction of the time.
PNG_COMPRESS_LEVEL = 1
BUTTONS = {"left": 1, "middle": 2, "right": 3}
SCROLL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}
MAX_SCROLL = 100
MAX_TYPE_CHARS = 10_000
TYPE_DELAY_MS = 12
KEYMAP_SETTLE_S = 0.1
# xdotool-style modifier names and the keysyms they stand for.
KEY_ALIASES = {
    "ctrl": "Control_L",
    "control": "Control_L",
    "alt": "Alt_L",
    "shift": "Shift_L",
    "super": "Super_L",
    "meta": "Meta_L",
    "win": "Super_L",
    "cmd": "Super_L",
    "enter": "Return",
    "esc": "Escape",
}
APPLICATION_DIRS = [
    os.path.expanduser("~/.local/share/applications"),
    "/usr/local/share/applications",
    "/usr/share/applications",
]

ENV = dict(os.environ, DISPLAY=DISPLAY)


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


class Desktop:
    """The display :0 (started here unless someone else's answers) with its window manager."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conn = None
        self.ready = False
        self.failure = None
        # Keysyms bound here to spare keycodes, least recently typed first: {keysym: keycode}.
        self.bound = {}
        # Shared-memory capture of the screen, made on the first screenshot; False once it proved impossible.
        self.shm = None

    # --- start -----------------------------------------------------------------------------------------

    def start(self):
        try:
            conn = self._open()
            if conn is None:
                spawn(["Xvfb", DISPLAY, "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-dpi", str(DPI), "-nolisten", "tcp"])
                conn = self._wait(self._open, DISPLAY_TIMEOUT_S, "the display (Xvfb) did not start")
            self.conn = conn
            if not self._wm_running():
                session = ["startxfce4"]
                if shutil.which("dbus-launch"):
                    session = ["dbus-launch", "--exit-with-session", "startxfce4"]
                spawn(session)
                self._wait(self._wm_running, WM_TIMEOUT_S, "the window manager (Xfce) did not start")
            self.ready = True
        except Exception as e:  # noqa: BLE001 - health reports it
            self.failure = str(e)
            traceback.print_exc()

    @staticmethod
    def _open():
        try:
            return display.Display(DISPLAY)
        except Exception:  # noqa: BLE001 - not up yet
            return None

    @staticmethod
    def _wait(probe, timeout, message):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(POLL_S)
        raise RuntimeError(message)

    def _wm_running(self):
        with self.lock:
            root = self.conn.screen().root
            check = self._property(root, "_NET_SUPPORTING_WM_CHECK")
            return bool(check)

    def _atom(self, name):
        return self.conn.intern_atom(name)

    def _property(self, window, name, kind=X.AnyPropertyType):
        try:
            prop = window.get_full_property(self._atom(name), kind)
        except xerror.XError:
            return None
        return None if prop is None else prop.value

    # --- queries -----------------------------------------------------------------------------------------

    def require(self):
        if not self.ready:
            raise ApiError(
                409, "desktop_unavailable", f"the desktop is not running: {self.failure or 'it is starting'}"
            )

    def screen_size(self):
        screen = self.conn.screen()
        return screen.width_in_pixels, screen.height_in_pixels

    def info(self):
        with self.lock:
            width, height = self.screen_size()
            pointer = self.conn.screen().root.query_pointer()
            return {
                "display": DISPLAY,
                "width": width,
                "height": height,
                "dpi": DPI,
                "cursor": {"x": pointer.root_x, "y": pointer.root_y},
            }

    def screenshot(self, query):
        with self.lock:
            width, height = self.screen_size()
            x = int_param(query, "x", 0, 0, width - 1)
            y = int_param(query, "y", 0, 0, height - 1)
            w = int_param(query, "width", width - x, 1, width)
            h = int_param(query, "height", height - y, 1, height)
            if x + w > width:
                raise invalid("width", "within_screen", f"x + width must be at most the screen's width {width}")
            if y + h > height:
                raise invalid("height", "within_screen", f"y + height must be at most the screen's height {height}")
            scale = float_param(query, "scale", 1.0)
            started = time.perf_counter()
            image = self._capture(x, y, w, h, width, height)
            captured = time.perf_counter()
        if scale != 1.0:
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        encoded = time.perf_counter()
        timing = {"captureMs": (captured - started) * 1000, "encodeMs": (encoded - captured) * 1000}
        return out.getvalue(), image.size, timing

    def _capture(self, x, y, w, h, width, height):
        """The rectangle's pixels: the whole screen through shared memory, cropped; else over the X socket."""
        if self.shm is None:
            try:
                self.shm = ShmCapture(DISPLAY)
            except ShmUnavailable as e:
                print(f"screenshots over the X socket: {e}", flush=True)
                self.shm = False
        if self.shm:
            try:
                raw, stride = self.shm.capture(width, height)
                screen = Image.frombuffer("RGB", (width, height), raw, "raw", "BGRX", stride, 1)
                return screen if (x, y, w, h) == (0, 0, width, height) else screen.crop((x, y, x + w, y + h))
            except ShmUnavailable as e:
                print(f"screenshots over the X socket: {e}", flush=True)
                self.shm.close()
                self.shm = False
        raw = self.conn.screen().root.get_image(x, y, w, h, X.ZPixmap, 0xFFFFFFFF)
        return Image.frombuffer("RGB", (w, h), raw.data, "raw", "BGRX", 0, 1)

    # --- mouse -------------------------------------------------------------------------------------------

    def mouse(self, body):
        action = body.get("action")
        if action not in ("move", "click", "double_click", "down", "up", "drag", "scroll"):
            raise invalid(
                "action", "enum", "must be one of move, click, double_click, down, up, drag, scroll"
            )
        with self.lock:
            width, height = self.screen_size()
            point = self._point(body, "x", "y", width, height, required=action in ("move", "drag"))
            if action == "move":
                self._move(*point)
            elif action in ("click", "double_click", "down", "up"):
                button = self._button(body)
                if point is not None:
                    self._move(*point)
                if action == "down":
                    self._button_event(X.ButtonPress, button)
                elif action == "up":
                    self._button_event(X.ButtonRelease, button)
                else:
                    for _ in range(2 if action == "double_click" else 1):
                        self._button_event(X.ButtonPress, button)
                        self._button_event(X.ButtonRelease, button)
            elif action == "drag":
                start = self._point(body, "fromX", "fromY", width, height, required=False)
                button = self._button(body)
                if start is not None:
                    self._move(*start)
                self._button_event(X.ButtonPress, button)
                self._move(*point)
                self._button_event(X.ButtonRelease, button)
            else:
                direction = body.get("direction", "down")
                if direction not in SCROLL_BUTTONS:
                    raise invalid("direction", "enum", "must be one of up, down, left, right")
                amount = body.get("amount", 1)
                if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= MAX_SCROLL:
                    raise invalid("amount", "range", f"must be an integer from 1 to {MAX_SCROLL}")
                if point is not None:
                    self._move(*point)
                for _ in range(amount):
                    self._button_event(X.ButtonPress, SCROLL_BUTTONS[direction])
                    self._button_event(X.ButtonRelease, SCROLL_BUTTONS[direction])
            self.conn.sync()
            pointer = self.conn.screen().root.query_pointer()
            return {"x": pointer.root_x, "y": pointer.root_y}

    @staticmethod
    def _point(body, xname, yname, width, height, required):
        if body.get(xname) is None and body.get(yname) is None and not required:
            return None
        return (
            coordinate(body, xname, width, "width"),
            coordinate(body, yname, height, "height"),
        )

    @staticmethod
    def _button(body):
        button = body.get("button", "left")
        if button not in BUTTONS:
            raise invalid("button", "enum", "must be one of left, right, middle")
        return BUTTONS[button]

    def _move(self, x, y):
        xtest.fake_input(self.conn, X.MotionNotify, x=x, y=y)

    def _button_event(self, kind, button):
        xtest.fake_input(self.conn, kind, button)

    # --- keyboard ----------------------------------------------------------------------------------------

    def keyboard(self, body):
        action = body.get("action")
        if action == "type":
            text = body.get("text")
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_TYPE_CHARS:
                raise invalid("text", "length", f"must be a string of 1 to {MAX_TYPE_CHARS} characters")
            for chunk in self._chunks_to_bind(text):
                with self.lock:
                    self._bind(chunk)
                self._xdotool(["type", "--delay", str(TYPE_DELAY_MS), "--", chunk])
            return {}
        elif action == "press":
            keys = body.get("keys")
            if isinstance(keys, str):
                keys = [keys]
            if not isinstance(keys, list) or not 1 <= len(keys) <= 50 or not all(isinstance(k, str) for k in keys):
                raise invalid("keys", "type", "must be a key combo or a list of 1 to 50 of them (ctrl+c, Return)")
            for index, combo in enumerate(keys):
                for name in combo.split("+"):
                    if keysym_of(name) == X.NoSymbol:
                        raise invalid(
                            f"keys.{index}", "key_name", f"{name!r} is not a key name (xdotool's: ctrl+c, Return, alt+F4)"
                        )
            self._xdotool(["key", "--delay", str(TYPE_DELAY_MS), "--", *keys])
            return {}
        raise invalid("action", "enum", "must be one of type, press")

    @staticmethod
    def _xdotool(args):
        done = subprocess.run(["xdotool", *args], env=ENV, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ApiError(500, "internal", f"xdotool failed: {done.stderr.strip()}")

    def _keymap(self):
        first = self.conn.display.info.min_keycode
        count = self.conn.display.info.max_keycode - first + 1
        return first, self.conn.get_keyboard_mapping(first, count)

    def _spare_keycodes(self):
        with self.lock:
            first, keymap = self._keymap()
        return sum(1 for syms in keymap if not any(syms)) + len(self.bound)

    def _chunks_to_bind(self, text):
        """The text in pieces whose characters without a key fit the spare keycodes at once."""
        room = max(1, self._spare_keycodes())
        chunk, keysyms = "", set()
        for char in text:
            keysym = char_keysym(char)
            if keysym is not None and keysym not in keysyms and len(keysyms) == room:
                yield chunk
                chunk, keysyms = "", set()
            if keysym is not None:
                keysyms.add(keysym)
            chunk += char
        if chunk:
            yield chunk

    def _bind(self, text):
        """Binds the keysyms of the text's characters that no key produces to spare keycodes (kept bound)."""
        first, keymap = self._keymap()
        present = {sym for syms in keymap for sym in syms[:2] if sym}
        wanted = []
        for char in text:
            keysym = char_keysym(char)
            if keysym is None:
                continue
            if keysym in self.bound:
                self.bound[keysym] = self.bound.pop(keysym)  # most recently used now
            elif keysym not in present and keysym not in wanted:
                wanted.append(keysym)
        if not wanted:
            return
        spare = [first + i for i, syms in enumerate(keymap) if not any(syms)]
        in_use = set(wanted) | {char_keysym(c) for c in text}
        for keysym in wanted:
            if not spare:
                # Reuse the keycode of the least recently typed keysym this text does not need.
                old = next(k for k in self.bound if k not in in_use)
                spare.append(self.bound.pop(old))
            keycode = spare.pop(0)
            self.conn.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self.bound[keysym] = keycode
        self.conn.sync()
        # Applications reload the keymap when they read the MappingNotify: let them, before keys come.
        time.sleep(KEYMAP_SETTLE_S)

    # --- windows -----------------------------------------------------------------------------------------

    def windows(self):
        with self.lock:
            root = self.conn.screen().root
            active = self._property(root, "_NET_ACTIVE_WINDOW")
            active_id = active[0] if active is not None and len(active) else 0
            listed = []
            for wid in self._property(root, "_NET_CLIENT_LIST") or []:
                window = self.conn.create_resource_object("window", wid)
                try:
                    geometry = window.get_geometry()
                    origin = window.translate_coords(root, 0, 0)
                    wm_class = window.get_wm_class()
                except xerror.XError:
                    continue  # closed meanwhile
                title = self._property(window, "_NET_WM_NAME", self._atom("UTF8_STRING"))
                if title is None:
                    title = self._property(window, "WM_NAME")
                if isinstance(title, bytes):
                    title = title.decode("utf-8", "replace")
                pid = self._property(window, "_NET_WM_PID")
                listed.append(
                    {
                        "id": int(wid),
                        "title": title or "",
                        "className": wm_class[1] if wm_class else "",
                        "instanceName": wm_class[0] if wm_class else "",
                        "pid": int(pid[0]) if pid is not None and len(pid) else None,
                        "x": -origin.x,
                        "y": -origin.y,
                        "width": geometry.width,
                        "height": geometry.height,
                        "focused": wid == active_id,
                    }
                )
            return {"windows": listed}

    def focus(self, wid):
        with self.lock:
            root = self.conn.screen().root
            if wid not in (self._property(root, "_NET_CLIENT_LIST") or []):
                raise ApiError(404, "not_found", f"no window {wid} on the desktop")
            window = self.conn.create_resource_object("window", wid)
            # Source indication 2: a pager acting for the user, which window managers obey.
            message = xevent.ClientMessage(
                window=window, client_type=self._atom("_NET_ACTIVE_WINDOW"), data=(32, [2, X.CurrentTime, 0, 0, 0])
            )
            root.send_event(message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)
            self.conn.sync()
        return {}

    # --- applications ------------------------------------------------------------------------------------

    def launch(self, body):
        application = body.get("application")
        command = body.get("command")
        uri = body.get("uri")
        if (application is None) == (command is None):
            raise invalid("application", "one_of", "give either application (a .desktop name) or command")
        if uri is not None and not isinstance(uri, str):
            raise invalid("uri", "type", "must be a string")
        if application is not None:
            if not isinstance(application, str) or not application or "/" in application:
                raise invalid("application", "desktop_name", "must be a .desktop file's name, e.g. xfce4-terminal")
            name = application.removesuffix(".desktop")
            if not any(os.path.exists(os.path.join(d, f"{name}.desktop")) for d in APPLICATION_DIRS):
                raise ApiError(404, "not_found", f"no application {name!r} (no {name}.desktop in {', '.join(APPLICATION_DIRS)})")
            argv = ["gtk-launch", name, *([uri] if uri else [])]
        else:
            if not isinstance(command, str) or not command.strip():
                raise invalid("command", "required", "must be a non-empty shell command")
            argv = ["sh", "-c", command + (' "$0"' if uri else ""), *([uri] if uri else [])]
        return {"pid": spawn(argv)}


def char_keysym(char):
    """The keysym of a character no plain key types (None for ASCII and control characters)."""
    code = ord(char)
    if code < 0x80:
        return None
    return code if code < 0x100 else 0x01000000 | code


def keysym_of(name):
    name = KEY_ALIASES.get(name.lower(), name)
    keysym = XK.string_to_keysym(name)
    if keysym == X.NoSymbol and len(name) == 1:
        keysym = ord(name) if ord(name) < 0x100 else 0x01000000 | ord(name)
    return keysym


def coordinate(body, field, limit, dimension):
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(field, "type", "must be an integer")
    if not 0 <= value < limit:
        raise invalid(field, "within_screen", f"must be from 0 to {limit - 1} (the screen's {dimension} is {limit})")
    return value


def int_param(query, name, default, low, high):
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "type", "must be an integer") from None
    if not low <= value <= high:
        raise invalid(name, "within_screen", f"must be from {low} to {high}")
    return value


def float_param(query, name, default):
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, "type", "must be a number") from None
    if not 0 < value <= 1:
        raise invalid(name, "range", "must be more than 0 and at most 1")
    return value


def spawn(argv):
    """Starts a process of the desktop on its own (a session of its own, reaped here); returns its pid."""
    child = subprocess.Popen(
        argv,
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.path.expanduser("~"),
    )
    threading.Thread(target=child.wait, daemon=True).start()
    return child.pid


DESKTOP = Desktop()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def handle_request(self, method):
        try:
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                raise ApiError(401, "unauthorized", "missing or wrong token")
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = [p for p in url.path.split("/") if p]
            if method == "GET" and parts == ["health"]:
                if not DESKTOP.ready:
                    raise ApiError(503, "desktop_unavailable", DESKTOP.failure or "the desktop is starting")
                return self.send_json(200, {"ok": True})
            DESKTOP.require()
            if method == "GET" and parts == []:
                return self.send_json(200, DESKTOP.info())
            if method == "GET" and parts == ["screenshot"]:
                png, size, timing = DESKTOP.screenshot(query)
                headers = {
                    "x-desktop-capture-ms": f"{timing['captureMs']:.1f}",
                    "x-desktop-encode-ms": f"{timing['encodeMs']:.1f}",
                    "x-desktop-image-size": f"{size[0]}x{size[1]}",
                }
                return self.send_bytes(200, "image/png", png, headers)
            if method == "POST" and parts == ["mouse"]:
                return self.send_json(200, DESKTOP.mouse(self.read_json()))
            if method == "POST" and parts == ["keyboard"]:
                return self.send_json(200, DESKTOP.keyboard(self.read_json()))
            if method == "GET" and parts == ["windows"]:
                return self.send_json(200, DESKTOP.windows())
            if method == "POST" and len(parts) == 3 and parts[0] == "windows" and parts[2] == "focus":
                try:
                    wid = int(parts[1])
                except ValueError:
                    raise invalid("windowId", "type", "must be an integer") from None
                return self.send_json(200, DESKTOP.focus(wid))
            if method == "POST" and parts == ["launch"]:
                return self.send_json(200, DESKTOP.launch(self.read_json()))
            raise ApiError(404, "not_found", f"no route {method} {url.path}")
        except ApiError as e:
            self.send_json(e.status, e.body())
        except Exception as e:  # noqa: BLE001 - answered as the envelope
            traceback.print_exc()
            self.send_json(500, {"error": {"code": "internal", "message": f"desktop server: {e}"}})

    def read_json(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid("body", "json", "must be a JSON object") from None
        if not isinstance(body, dict):
            raise invalid("body", "type", "must be a JSON object")
        return body

    def send_json(self, status, body):
        self.send_bytes(status, "application/json", json.dumps(body).encode())

    def send_bytes(self, status, content_type, payload, headers=None):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def main():
    host, port = LISTEN.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=DESKTOP.start, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
