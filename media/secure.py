"""An authenticated, encrypted byte stream between two nodes that share the cluster secret.

The worker channel (``media.channel``) between a node and a media worker on another node runs over
it, so that channel is no open port: whoever does not know ``SANKE_CLUSTER_SECRET`` can neither
send a request nor read one (the pipes' SRTP keys travel in those requests).

Handshake, both ways at once: each end sends ``MAGIC`` and a fresh 32-byte nonce; both derive two
AES-256-GCM keys (one per direction) with HKDF-SHA256 from the secret, salted with the client's
and the server's nonces. Then records: a 4-byte big-endian length and that many bytes of GCM
ciphertext and tag, the nonce being the record's number in its direction (never sent: a record
replayed, dropped or reordered fails), the direction's label as associated data. The first
record each way is :data:`PROOF`; an end that cannot produce it (a wrong secret) is dropped
before anything else is read. A record that fails to decrypt closes the stream.

:class:`SecureReader` and :class:`SecureWriter` offer what :class:`media.channel.Channel` uses of
an asyncio stream pair (``readexactly``; ``write``, ``drain``, ``close``, ``wait_closed``): one
``write`` is one record. Must not: log secrets, accept a stream that has not proved the secret.
"""

from __future__ import annotations

import asyncio
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SKC1"
NONCE_BYTES = 32
PROOF = b"sanke cluster channel v1"
MAX_RECORD = 4 * 1024 * 1024 + 4096
"""Largest record accepted (a channel frame of 4 MiB and its header, plus the tag)."""
HANDSHAKE_TIMEOUT_S = 5.0
_LABELS = (b"client->server", b"server->client")


class SecureError(ConnectionError):
    """The other end did not prove the secret, or sent a record that does not decrypt."""


def _keys(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=client_nonce + server_nonce,
                    info=b"sanke media channel v1").derive(secret)
    return material[:32], material[32:]


class SecureReader:
    def __init__(self, reader: asyncio.StreamReader, key: bytes, label: bytes) -> None:
        self._reader = reader
        self._aead = AESGCM(key)
        self._label = label
        self._counter = 0
        self._buffer = bytearray()

    async def _record(self) -> bytes:
        header = await self._reader.readexactly(4)
        (size,) = struct.unpack(">I", header)
        if size < 16 or size > MAX_RECORD:
            raise SecureError(f"record of {size} bytes")
        body = await self._reader.readexactly(size)
        nonce = self._counter.to_bytes(12, "big")
        self._counter += 1
        try:
            return self._aead.decrypt(nonce, body, self._label)
        except InvalidTag:
            raise SecureError("a record failed authentication") from None

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            try:
                self._buffer += await self._record()
            except asyncio.IncompleteReadError:
                raise asyncio.IncompleteReadError(bytes(self._buffer), n) from None
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


class SecureWriter:
    def __init__(self, writer: asyncio.StreamWriter, key: bytes, label: bytes) -> None:
        self._writer = writer
        self._aead = AESGCM(key)
        self._label = label
        self._counter = 0

    def write(self, data: bytes) -> None:
        nonce = self._counter.to_bytes(12, "big")
        self._counter += 1
        sealed = self._aead.encrypt(nonce, bytes(data), self._label)
        self._writer.write(struct.pack(">I", len(sealed)) + sealed)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._writer.get_extra_info(name, default)


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes,
                     client: bool) -> tuple[SecureReader, SecureWriter]:
    if len(secret) < 16:
        raise ValueError("the cluster secret is too short (at least 16 bytes)")
    mine = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + mine)
    await writer.drain()
    hello = await reader.readexactly(len(MAGIC) + NONCE_BYTES)
    if hello[:len(MAGIC)] != MAGIC:
        raise SecureError("not a SanKe cluster channel")
    theirs = hello[len(MAGIC):]
    c2s, s2c = _keys(secret, mine if client else theirs, theirs if client else mine)
    out_key, in_key = (c2s, s2c) if client else (s2c, c2s)
    out_label, in_label = (_LABELS[0], _LABELS[1]) if client else (_LABELS[1], _LABELS[0])
    secure_reader = SecureReader(reader, in_key, in_label)
    secure_writer = SecureWriter(writer, out_key, out_label)
    secure_writer.write(PROOF)
    await secure_writer.drain()
    if await secure_reader.readexactly(len(PROOF)) != PROOF:
        raise SecureError("the other end did not prove the cluster secret")
    return secure_reader, secure_writer


async def connect(host: str, port: int, secret: bytes,
                  timeout: float = HANDSHAKE_TIMEOUT_S) -> tuple[SecureReader, SecureWriter]:
    """A secure stream to ``host:port`` (raises ``SecureError``/``OSError``/``TimeoutError``)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1024 * 1024), timeout)
    try:
        return await asyncio.wait_for(_handshake(reader, writer, secret, client=True), timeout)
    except BaseException:
        writer.close()
        raise


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes,
                 timeout: float = HANDSHAKE_TIMEOUT_S) -> tuple[SecureReader, SecureWriter]:
    """The server's side of the handshake on an accepted connection (the caller closes it on failure)."""
    return await asyncio.wait_for(_handshake(reader, writer, secret, client=False), timeout)
