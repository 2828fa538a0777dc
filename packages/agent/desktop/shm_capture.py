"""Screen capture through the X server's shared-memory extension (MIT-SHM), with libX11/libXext by ctypes.

python-xlib's `get_image` makes the X server write the whole picture into its socket (3 MB for 1024x768),
which under gVisor costs about as much as everything else a screenshot does. With MIT-SHM the server copies
the picture into a segment both processes have mapped, and only a short request and reply cross the socket.
The segment is made once per screen size; it is marked for removal as soon as both sides attached it, so it
never outlives the two processes (and comes back with them after a pause and resume, being their memory).
"""

import ctypes
import ctypes.util

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
Z_PIXMAP = 2
ALL_PLANES = 0xFFFFFFFF


class _ShmSegmentInfo(ctypes.Structure):
    _fields_ = [
        ("shmseg", ctypes.c_ulong),
        ("shmid", ctypes.c_int),
        ("shmaddr", ctypes.c_void_p),
        ("readOnly", ctypes.c_int),
    ]


class _XImage(ctypes.Structure):
    # The leading members of Xlib's XImage, which are all that is read here.
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
    ]


_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class ShmUnavailable(Exception):
    """The display cannot share memory with this process (no MIT-SHM, another owner, a remote display)."""


class ShmCapture:
    """Captures rectangles of one display's root window into a shared segment; not thread-safe (callers lock)."""

    def __init__(self, display_name):
        x11 = ctypes.util.find_library("X11")
        xext = ctypes.util.find_library("Xext")
        if not x11 or not xext:
            raise ShmUnavailable("libX11 or libXext is not installed")
        self.x11 = ctypes.CDLL(x11)
        self.xext = ctypes.CDLL(xext)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self._declare()
        # An X error (e.g. the server refusing to attach the segment) must not end this process, which is
        # Xlib's default; it is remembered and turned into ShmUnavailable.
        self.failed = False
        self._handler = _ERROR_HANDLER(self._on_error)
        self.x11.XSetErrorHandler(self._handler)
        self.dpy = self.x11.XOpenDisplay(display_name.encode())
        if not self.dpy:
            raise ShmUnavailable(f"cannot open display {display_name}")
        if not self.xext.XShmQueryExtension(self.dpy):
            self.close()
            raise ShmUnavailable("the X server has no MIT-SHM extension")
        self.size = None
        self.image = None
        self.info = _ShmSegmentInfo()

    def _declare(self):
        x11, xext, libc = self.x11, self.xext, self.libc
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
        x11.XRootWindow.restype = ctypes.c_ulong
        x11.XRootWindow.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XDefaultVisual.restype = ctypes.c_void_p
        x11.XDefaultVisual.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XDefaultDepth.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XFree.argtypes = [ctypes.c_void_p]
        x11.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
        x11.XSetErrorHandler.restype = ctypes.c_void_p
        xext.XShmQueryExtension.argtypes = [ctypes.c_void_p]
        xext.XShmCreateImage.restype = ctypes.POINTER(_XImage)
        xext.XShmCreateImage.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.POINTER(_ShmSegmentInfo),
            ctypes.c_uint,
            ctypes.c_uint,
        ]
        xext.XShmAttach.argtypes = [ctypes.c_void_p, ctypes.POINTER(_ShmSegmentInfo)]
        xext.XShmDetach.argtypes = [ctypes.c_void_p, ctypes.POINTER(_ShmSegmentInfo)]
        xext.XShmGetImage.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.POINTER(_XImage),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_ulong,
        ]
        libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        libc.shmdt.argtypes = [ctypes.c_void_p]
        libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

    def _on_error(self, _dpy, _event):
        self.failed = True
        return 0

    def capture(self, width, height):
        """The whole screen (`width` x `height`, its current size) as BGRX bytes, `bytes_per_line` apart."""
        if self.size != (width, height):
            self._release()
            self._attach(width, height)
        image = self.image.contents
        self.failed = False
        screen = self.x11.XDefaultScreen(self.dpy)
        ok = self.xext.XShmGetImage(self.dpy, self.x11.XRootWindow(self.dpy, screen), self.image, 0, 0, ALL_PLANES)
        if not ok or self.failed:
            raise ShmUnavailable("XShmGetImage failed")
        if image.bits_per_pixel != 32:
            raise ShmUnavailable(f"the screen has {image.bits_per_pixel} bits per pixel, not 32")
        return ctypes.string_at(self.info.shmaddr, image.bytes_per_line * height), image.bytes_per_line

    def _attach(self, width, height):
        screen = self.x11.XDefaultScreen(self.dpy)
        visual = self.x11.XDefaultVisual(self.dpy, screen)
        depth = self.x11.XDefaultDepth(self.dpy, screen)
        info = _ShmSegmentInfo()
        image = self.xext.XShmCreateImage(self.dpy, visual, depth, Z_PIXMAP, None, ctypes.byref(info), width, height)
        if not image:
            raise ShmUnavailable("XShmCreateImage failed")
        length = image.contents.bytes_per_line * height
        info.shmid = self.libc.shmget(IPC_PRIVATE, length, IPC_CREAT | 0o600)
        if info.shmid < 0:
            raise ShmUnavailable(f"shmget failed: errno {ctypes.get_errno()}")
        address = self.libc.shmat(info.shmid, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            self.libc.shmctl(info.shmid, IPC_RMID, None)
            raise ShmUnavailable(f"shmat failed: errno {ctypes.get_errno()}")
        info.shmaddr = address
        image.contents.data = address
        info.readOnly = 0
        self.failed = False
        self.xext.XShmAttach(self.dpy, ctypes.byref(info))
        self.x11.XSync(self.dpy, 0)
        # Both sides hold it now (or the server refused): removal takes effect when the last one detaches.
        self.libc.shmctl(info.shmid, IPC_RMID, None)
        self.info, self.image, self.size = info, image, (width, height)
        if self.failed:
            self._release()
            raise ShmUnavailable("the X server could not attach the shared segment")

    def _release(self):
        if self.image is None:
            return
        self.xext.XShmDetach(self.dpy, ctypes.byref(self.info))
        self.x11.XSync(self.dpy, 0)
        self.libc.shmdt(ctypes.c_void_p(self.info.shmaddr))
        # The image's struct only: its data is the segment (what XDestroyImage does for an MIT-SHM image).
        self.x11.XFree(self.image)
        self.image = None
        self.size = None

    def close(self):
        self._release()
        if self.dpy:
            self.x11.XCloseDisplay(self.dpy)
            self.dpy = None
