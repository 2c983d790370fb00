"""A tiny authoritative DNS server for RDS endpoint names (stdlib only).

AWS's resolver answers ``<db>.<label>.<region>.rds.amazonaws.com`` with the
instance's private IP inside the VPC (and its public IP from outside when the
instance is publicly accessible). moto's names resolve nowhere, so the
project's functions, which resolve through a resolver the local stack can point
at, ask this server instead.

Answers, looked up live in moto's RDS backends of every account and region:
  * A     known name  -> the instance's current private IP, TTL 5
                         (PubliclyAccessible: an address in 203.0.113.0/24
                         derived from account, region and identifier)
  * AAAA  known name  -> NOERROR, no answer (RDS endpoints here are IPv4 only)
  * other known name  -> NOERROR, no answer
  * unknown name      -> NXDOMAIN
Negative answers carry an SOA with a 1 s minimum so a resolver does not cache
"no such instance" for long. EDNS(0): an OPT record in the query is answered
with a minimal OPT. UDP and TCP on the same port.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import struct
import threading
from typing import Any, Callable

from ._common import log

TTL = 5
NEGATIVE_TTL = 1
PUBLIC_NET = "203.0.113."  # TEST-NET-3: never routed, clearly fake

QTYPE_A, QTYPE_NS, QTYPE_SOA, QTYPE_AAAA, QTYPE_OPT = 1, 2, 6, 28, 41
RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 2, 3, 4


def public_ip_for(account_id: str, region: str, identifier: str) -> str:
    digest = hashlib.sha256(f"{account_id}:{region}:{identifier}".encode()).digest()
    return PUBLIC_NET + str(1 + digest[0] % 254)


def lookup_a(name: str) -> tuple[bool, str | None]:
    """(name known, IPv4 address or None) for an RDS endpoint name."""
    from . import rds

    db = rds.find_instance_by_address(name)
    if db is None:
        return False, None
    if getattr(db, "publicly_accessible", False):
        return True, public_ip_for(db.account_id, db.region, db.db_instance_identifier)
    return True, rds.private_ip(db)


class DnsError(Exception):
    pass


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    jumped = False
    end = offset
    for _ in range(128):  # bounded: a pointer loop must not hang the server
        if offset >= len(packet):
            raise DnsError("name runs past the packet")
        length = packet[offset]
        if length == 0:
            offset += 1
            if not jumped:
                end = offset
            return ".".join(labels), end
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(packet):
                raise DnsError("truncated pointer")
            pointer = ((length & 0x3F) << 8) | packet[offset + 1]
            if not jumped:
                end = offset + 2
            jumped = True
            offset = pointer
            continue
        if length & 0xC0:
            raise DnsError("unsupported label type")
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise DnsError("name too long")


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii", "replace")[:63]
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def _soa_for(name: str) -> bytes:
    zone = "rds.amazonaws.com" if name.lower().endswith("rds.amazonaws.com") else ""
    rdata = (
        _encode_name("ns.emulator.invalid")
        + _encode_name("hostmaster.emulator.invalid")
        + struct.pack("!IIIII", 1, 60, 60, 60, NEGATIVE_TTL)
    )
    return _encode_name(zone) + struct.pack("!HHIH", QTYPE_SOA, 1, NEGATIVE_TTL, len(rdata)) + rdata


def build_response(query: bytes, resolver: Callable[[str], tuple[bool, str | None]] = lookup_a) -> bytes | None:
    """The answer to one DNS message, or None when it is not worth answering."""
    if len(query) < 12:
        return None
    qid, flags, qdcount, _ancount, _nscount, arcount = struct.unpack("!HHHHHH", query[:12])
    if flags & 0x8000:  # a response, not a query: ignore
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100

    def header(rcode: int, qd: int, an: int, ns: int, ar: int) -> bytes:
        # QR=1, same opcode, AA=1, RD copied; RA=1 as the VPC resolver
        # (AmazonProvidedDNS) sets it, so no client takes us for a non-resolver.
        out_flags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode
        return struct.pack("!HHHHHH", qid, out_flags, qd, an, ns, ar)

    if opcode != 0:
        return header(RCODE_NOTIMP, 0, 0, 0, 0)
    if qdcount != 1:
        return header(RCODE_FORMERR, 0, 0, 0, 0)
    try:
        qname, offset = _read_name(query, 12)
        if offset + 4 > len(query):
            raise DnsError("truncated question")
        qtype, qclass = struct.unpack("!HH", query[offset : offset + 4])
        question = query[12 : offset + 4]
        offset += 4
        edns = False
        # Skip answer/authority (none in a query) and look for OPT among the
        # additional records (hickory-resolver sends one by default).
        for _ in range(arcount):
            _, offset = _read_name(query, offset)
            rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", query[offset : offset + 10])
            offset += 10 + rdlen
            if rtype == QTYPE_OPT:
                edns = True
    except (DnsError, struct.error):
        return header(RCODE_FORMERR, 0, 0, 0, 0)

    # Minimal OPT: root name, UDP payload 1232, no flags, no options.
    opt = b"\x00" + struct.pack("!HHIH", QTYPE_OPT, 1232, 0, 0) if edns else b""
    ar = 1 if edns else 0
    try:
        known, ip = resolver(qname) if qclass in (1, 255) else (False, None)
    except Exception:  # moto state mid-change: let the client retry
        log.exception("dns: lookup of %s failed", qname)
        return header(RCODE_SERVFAIL, 1, 0, 0, ar) + question + opt
    if not known:
        return header(RCODE_NXDOMAIN, 1, 0, 1, ar) + question + _soa_for(qname) + opt
    if qtype in (QTYPE_A, 255) and ip:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_A, 1, TTL, 4) + socket.inet_aton(ip)
        return header(RCODE_NOERROR, 1, 1, 0, ar) + question + answer + opt
    # Known name, no record of that type (AAAA, TXT, ...): NODATA.
    return header(RCODE_NOERROR, 1, 0, 1, ar) + question + _soa_for(qname) + opt


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = build_response(data)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn = self.request
        conn.settimeout(5)
        try:
            while True:
                size_raw = _recv_exact(conn, 2)
                if not size_raw:
                    return
                data = _recv_exact(conn, struct.unpack("!H", size_raw)[0])
                if data is None:
                    return
                reply = build_response(data)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _ThreadingUDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def start(host: str, port: int) -> tuple[int, list[Any]]:
    """Bind UDP (and TCP on the same port) and serve in daemon threads.

    Returns the bound port (useful when ``port`` is 0) and the servers.
    """
    udp = _ThreadingUDPServer((host, port), _UdpHandler)
    bound = udp.server_address[1]
    servers: list[Any] = [udp]
    try:
        servers.append(_ThreadingTCPServer((host, bound), _TcpHandler))
    except OSError as err:  # TCP is optional; UDP is what resolvers use first
        log.warning("dns: TCP on %s:%s unavailable (%s); UDP only", host, bound, err)
    for server in servers:
        threading.Thread(target=server.serve_forever, name=f"dns-{type(server).__name__}", daemon=True).start()
    return bound, servers
