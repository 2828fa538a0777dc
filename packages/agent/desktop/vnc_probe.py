"""Whether the live view's servers serve a viewer. `vnc_probe.py rfb PORT`: exit 0 once the VNC server on
127.0.0.1:PORT has sent a picture. `vnc_probe.py http PORT`: exit 0 once the web server there (websockify,
which serves noVNC's page) has answered a request for the page.

The live view's script (packages/server/src/services/desktop-stream-service.ts) runs this every few seconds.
A greeting is not enough: under gVisor a threaded x11vnc was seen sending its banner and then never
answering a viewer's handshake, so the probe goes as far as a viewer does — version, security type None,
ClientInit (shared, so nobody is disconnected), ServerInit, one framebuffer update request — and waits for
the update. websockify was seen to stop answering new connections (noVNC's page stalled half loaded for
over a minute) while x11vnc served. Exit 1 on anything else or after TIMEOUT_S.
"""

import socket
import struct
import sys

TIMEOUT_S = 4
SECURITY_NONE = 1
FRAMEBUFFER_UPDATE, BELL, SERVER_CUT_TEXT = 0, 2, 3


def receive(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def serves(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        if not receive(sock, 12).startswith(b"RFB "):
            return False
        sock.sendall(b"RFB 003.008\n")
        offered = receive(sock, receive(sock, 1)[0])
        if SECURITY_NONE not in offered:
            return False
        sock.sendall(bytes([SECURITY_NONE]))
        if receive(sock, 4) != b"\0\0\0\0":
            return False
        sock.sendall(b"\x01")  # ClientInit: shared
        receive(sock, 20)  # width, height, pixel format
        receive(sock, struct.unpack(">I", receive(sock, 4))[0])  # the desktop's name
        sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1))  # a full update of one pixel
        while True:
            kind = receive(sock, 1)[0]
            if kind == FRAMEBUFFER_UPDATE:
                return True
            if kind == BELL:
                continue
            if kind != SERVER_CUT_TEXT:
                return False
            receive(sock, 3)
            receive(sock, struct.unpack(">I", receive(sock, 4))[0])


def serves_page(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(b"HEAD /vnc.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return receive(sock, 12)[9:12] == b"200"


if __name__ == "__main__":
    try:
        probe = {"rfb": serves, "http": serves_page}[sys.argv[1]]
        sys.exit(0 if probe(int(sys.argv[2])) else 1)
    except (OSError, IndexError, KeyError, ValueError):
        sys.exit(1)
