"""A minimal ZMTP 3.0 DEALER client (NULL and PLAIN mechanisms), standard library only.

Editors that bundle their own Python (Windows, macOS, AppImage builds) often lack
pyzmq and pip. This speaks just enough of ZMTP 3.0 (https://rfc.zeromq.org/spec/23/)
to talk to the daemon's libzmq ROUTER: greeting, READY with ``Socket-Type: DEALER``,
short and long (8-byte length) frames, multipart messages, and PING/PONG.

Unlike libzmq it does not reconnect or queue in the background: a broken connection
raises ``ConnectionError`` and the caller opens a new ``ZmtpDealer``.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Sequence, Union

Frame = Union[bytes, bytearray, memoryview]

_FLAG_MORE = 0x01
_FLAG_LONG = 0x02
_FLAG_COMMAND = 0x04

#: Largest frame accepted from the daemon (mirrors config.MAX_FRAME_BYTES' order of magnitude).
MAX_RECV_FRAME = 1 << 33


def _greeting(mechanism: bytes = b"NULL") -> bytes:
    # signature (10) | version 3.0 (2) | mechanism padded to 20 | as-server 0 | filler 31
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _command(name: bytes, body: bytes) -> bytes:
    return bytes([len(name)]) + name + body


def ready_properties(socket_type: bytes, identity: bytes = b"") -> bytes:
    """The metadata of a READY command: name (1-byte length) and value (4-byte length) pairs."""
    props = b""
    for key, val in ((b"Socket-Type", socket_type), (b"Identity", identity)):
        props += bytes([len(key)]) + key + struct.pack(">I", len(val)) + val
    return props


def parse_properties(data: bytes) -> dict[str, bytes]:
    """Metadata properties of a READY command body (after the command name)."""
    props, i = {}, 0
    while i < len(data):
        n = data[i]
        key = data[i + 1:i + 1 + n].decode("ascii", "replace")
        i += 1 + n
        (vlen,) = struct.unpack(">I", data[i:i + 4])
        props[key] = bytes(data[i + 4:i + 4 + vlen])
        i += 4 + vlen
    return props


def frame_header(length: int, *, more: bool, command: bool = False) -> bytes:
    """The flags byte and size field that precede a frame body of ``length`` bytes."""
    flags = (_FLAG_MORE if more else 0) | (_FLAG_COMMAND if command else 0)
    if length > 255:
        return struct.pack(">BQ", flags | _FLAG_LONG, length)
    return struct.pack(">BB", flags, length)


def open_socket(endpoint: str, timeout: float) -> socket.socket:
    """Connect a stream socket to ``ipc://PATH`` or ``tcp://HOST:PORT``."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if path.startswith("@"):  # Linux abstract namespace, as libzmq writes it
            path = "\0" + path[1:]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        return s
    if endpoint.startswith("tcp://"):
        hostport = endpoint[len("tcp://"):]
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        s = socket.create_connection((host, int(port)), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    raise ValueError(f"unsupported endpoint {endpoint!r}: use ipc://PATH or tcp://HOST:PORT")


class HandshakeRefused(ConnectionError):
    """The peer answered the handshake with ERROR (for PLAIN: a wrong user name or password)."""


class ZmtpDealer:
    """One ZMTP 3.0 connection acting as a DEALER socket.

    ``timeout`` bounds connecting, the handshake, and reading the rest of a message
    once its first byte has arrived; ``recv_multipart(timeout)`` bounds the wait for
    a message to begin.
    """

    def __init__(self, endpoint: str, timeout: float = 5.0, identity: bytes = b"", plain: tuple[bytes, bytes] | None = None):
        """``plain``: (user name, password) for the PLAIN mechanism (ZMTP-PLAIN, RFC 24); None: NULL."""
        self.endpoint = endpoint
        self.timeout = timeout
        self._buf = bytearray()
        self.sock = open_socket(endpoint, timeout)
        try:
            self._handshake(identity, plain)
        except BaseException:
            self.close()
            raise

    # ---- low-level I/O

    def _recv_some(self, fn, *args):
        """One recv call that fails after ``self.timeout`` seconds without a byte."""
        self.sock.settimeout(self.timeout)
        try:
            got = fn(*args)
        except socket.timeout:
            raise TimeoutError(f"ZMTP peer {self.endpoint} went silent for {self.timeout:g} s mid-message") from None
        if not got:
            raise ConnectionError(f"ZMTP peer {self.endpoint} closed the connection")
        return got

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += self._recv_some(self.sock.recv, max(65536, min(n - len(self._buf), 1 << 20)))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_body(self, n: int) -> bytes | bytearray:
        """Read a frame body; big bodies go straight into one preallocated buffer."""
        if n <= len(self._buf) or n < (1 << 16):
            return self._read(n)
        out = bytearray(n)
        view = memoryview(out)
        have = len(self._buf)
        view[:have] = self._buf
        self._buf.clear()
        while have < n:
            have += self._recv_some(self.sock.recv_into, view[have:], min(n - have, 1 << 24))
        return out

    def _read_frame(self) -> tuple[int, bytes | bytearray]:
        flags = self._read(1)[0]
        if flags & _FLAG_LONG:
            (size,) = struct.unpack(">Q", self._read(8))
        else:
            size = self._read(1)[0]
        if size > MAX_RECV_FRAME:
            raise ConnectionError(f"ZMTP frame of {size} bytes is over the {MAX_RECV_FRAME} limit")
        return flags, self._read_body(size)

    def _send_raw(self, data: Frame) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _send_command(self, name: bytes, body: bytes) -> None:
        cmd = _command(name, body)
        self._send_raw(frame_header(len(cmd), more=False, command=True) + cmd)

    # ---- handshake

    def _expect(self, want: bytes) -> bytes | bytearray:
        """Read one handshake command; return its body after the name."""
        flags, body = self._read_frame()
        if not flags & _FLAG_COMMAND:
            raise ConnectionError(f"ZMTP peer sent a message before {want.decode()}")
        name, rest = self._split_command(body)
        if name == b"ERROR":
            raise HandshakeRefused(f"ZMTP peer refused the handshake: {bytes(rest[1:]).decode(errors='replace')}")
        if bytes(body[:5]) == b"^RROR":  # libzmq 4.3's PLAIN server sends ERROR without its name's length byte
            raise HandshakeRefused(f"ZMTP peer refused the handshake: {bytes(body[6:]).decode(errors='replace')}")
        if name != want:
            raise ConnectionError(f"ZMTP peer sent {name!r} instead of {want.decode()}")
        return rest

    def _handshake(self, identity: bytes, plain: tuple[bytes, bytes] | None) -> None:
        mine = b"NULL" if plain is None else b"PLAIN"
        self._send_raw(_greeting(mine))
        greeting = self._read(64)
        if greeting[0] != 0xFF or greeting[9] & 0x01 != 0x01:
            raise ConnectionError(f"{self.endpoint} is not a ZeroMQ socket (bad greeting signature)")
        if greeting[10] < 3:
            raise ConnectionError(f"{self.endpoint} speaks ZMTP {greeting[10]}.x; 3.0 or newer is needed")
        mechanism = greeting[12:32].rstrip(b"\x00")
        if mechanism != mine:
            raise ConnectionError(
                f"{self.endpoint} wants the {mechanism.decode(errors='replace')} security mechanism; this client offered {mine.decode()}"
            )
        if plain is None:
            self._send_command(b"READY", ready_properties(b"DEALER", identity))
        else:
            user, password = plain
            self._send_command(b"HELLO", bytes([len(user)]) + user + bytes([len(password)]) + password)
            self._expect(b"WELCOME")
            self._send_command(b"INITIATE", ready_properties(b"DEALER", identity))
        rest = self._expect(b"READY")
        self.peer_properties = parse_properties(bytes(rest))
        peer_type = self.peer_properties.get("Socket-Type", b"")
        if peer_type not in (b"ROUTER", b"DEALER"):
            raise ConnectionError(f"ZMTP peer is a {peer_type.decode(errors='replace')} socket; a DEALER talks to ROUTER or DEALER")

    @staticmethod
    def _split_command(body: bytes | bytearray) -> tuple[bytes, bytes | bytearray]:
        n = body[0]
        return bytes(body[1:1 + n]), body[1 + n:]

    def _handle_command(self, body: bytes | bytearray) -> None:
        name, rest = self._split_command(body)
        if name == b"PING":  # ZMTP 3.1 heartbeat: answer with the ping's context
            self._send_command(b"PONG", bytes(rest[2:]))
        elif name == b"ERROR":
            raise ConnectionError(f"ZMTP peer reported an error: {bytes(rest[1:]).decode(errors='replace')}")
        # PONG, SUBSCRIBE and unknown commands need no answer.

    # ---- public API (pyzmq-like)

    def send_multipart(self, frames: Sequence[Frame]) -> None:
        """Send one multipart message. Large frames are written without copying."""
        if not frames:
            raise ValueError("a message needs at least one frame")
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            view = memoryview(frame).cast("B") if not isinstance(frame, bytes) else frame
            head = frame_header(len(view), more=i < last)
            if len(view) < 4096:
                self._send_raw(head + bytes(view))
            else:
                self._send_raw(head)
                self._send_raw(view)

    def poll(self, timeout: float) -> bool:
        """True when a message has started to arrive within ``timeout`` seconds."""
        if self._buf:
            return True
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        return bool(r)

    def recv_multipart(self, timeout: float | None = None) -> list[bytes] | None:
        """The next message's frames, or None if none began within ``timeout`` seconds.

        Once a message has begun, its remainder may take as long as it needs, but a
        silence of ``self.timeout`` seconds mid-message raises ``TimeoutError``.
        """
        wait = self.timeout if timeout is None else timeout
        end = time.monotonic() + wait
        while True:
            if not self.poll(end - time.monotonic()):
                return None
            frames: list[bytes] = []
            while True:
                flags, body = self._read_frame()
                if flags & _FLAG_COMMAND:
                    self._handle_command(body)
                    break
                frames.append(body)
                if not flags & _FLAG_MORE:
                    return frames
            if time.monotonic() >= end:
                return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "ZmtpDealer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ZmtpDealer", "frame_header", "open_socket", "parse_properties"]
