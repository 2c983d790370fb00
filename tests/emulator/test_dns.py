"""The DNS server answers RDS endpoint names from moto's live state."""

from __future__ import annotations

import random
import socket
import struct

from conftest import make_network
from test_rds import create_db, network_with_group


def query(port: int, name: str, qtype: int = 1, edns: bool = True, tcp: bool = False) -> dict:
    """Send one standard query (as hickory-resolver would) and parse the reply."""
    qid = random.randint(0, 0xFFFF)
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    message = header + qname + struct.pack("!HH", qtype, 1)
    if edns:
        message += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(struct.pack("!H", len(message)) + message)
            size = struct.unpack("!H", conn.recv(2))[0]
            data = b""
            while len(data) < size:
                data += conn.recv(size - len(data))
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(message, ("127.0.0.1", port))
            data, _ = sock.recvfrom(4096)
    rid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    assert rid == qid and flags & 0x8000
    offset = 12 + len(qname) + 4
    records = []
    for _ in range(an + ns + ar):
        if data[offset] & 0xC0 == 0xC0:
            offset += 2
        else:
            while data[offset]:
                offset += 1 + data[offset]
            offset += 1
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", data[offset : offset + 10])
        rdata = data[offset + 10 : offset + 10 + rdlen]
        records.append({"type": rtype, "ttl": ttl, "rdata": rdata})
        offset += 10 + rdlen
    answers = records[:an]
    return {
        "rcode": flags & 0xF,
        "aa": bool(flags & 0x0400),
        "answers": [socket.inet_ntoa(r["rdata"]) for r in answers if r["type"] == 1],
        "ttls": [r["ttl"] for r in answers],
        "authority": records[an : an + ns],
        "opt": [r for r in records[an + ns :] if r["type"] == 41],
    }


def test_a_record_is_the_instance_private_ip(aws, emulator):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    db = create_db(rds, "orders", net)
    eni = ec2.describe_network_interfaces(
        Filters=[{"Name": "vpc-id", "Values": [net["vpc"]]}, {"Name": "description", "Values": ["RDSNetworkInterface"]}]
    )["NetworkInterfaces"][0]

    reply = query(emulator.dns_port, db["Endpoint"]["Address"])
    assert reply["rcode"] == 0 and reply["aa"]
    assert reply["answers"] == [eni["PrivateIpAddress"]]
    assert reply["ttls"] == [5]
    assert len(reply["opt"]) == 1  # EDNS echoed
    # Without EDNS, over TCP, and in upper case: same answer.
    assert query(emulator.dns_port, db["Endpoint"]["Address"].upper(), edns=False, tcp=True)["answers"] == [
        eni["PrivateIpAddress"]
    ]


def test_aaaa_is_empty_and_unknown_is_nxdomain(aws, emulator):
    db = create_db(aws("rds"), "v4only")
    aaaa = query(emulator.dns_port, db["Endpoint"]["Address"], qtype=28)
    assert aaaa["rcode"] == 0 and aaaa["answers"] == []
    missing = query(emulator.dns_port, "nope.abcdefghijkl.us-east-1.rds.amazonaws.com")
    assert missing["rcode"] == 3 and missing["answers"] == []
    assert missing["authority"][0]["type"] == 6  # SOA, for short negative caching
    assert query(emulator.dns_port, "example.com")["rcode"] == 3


def test_publicly_accessible_answers_test_net_3(aws, emulator):
    db = create_db(aws("rds"), "public-db", PubliclyAccessible=True)
    [ip] = query(emulator.dns_port, db["Endpoint"]["Address"])["answers"]
    assert ip.startswith("203.0.113.")
    assert query(emulator.dns_port, db["Endpoint"]["Address"])["answers"] == [ip]  # stable


def test_dns_follows_failover_and_delete(aws, emulator):
    rds = aws("rds")
    net = network_with_group(aws)
    address = create_db(rds, "moving", net, MultiAZ=True)["Endpoint"]["Address"]
    [before] = query(emulator.dns_port, address)["answers"]
    rds.reboot_db_instance(DBInstanceIdentifier="moving", ForceFailover=True)
    [after] = query(emulator.dns_port, address)["answers"]
    assert after != before
    rds.delete_db_instance(DBInstanceIdentifier="moving", SkipFinalSnapshot=True)
    assert query(emulator.dns_port, address)["rcode"] == 3


def test_same_identifier_in_two_accounts_resolves_to_each_ip(aws, other_aws, emulator):
    answers = []
    for factory in (aws, other_aws):
        net = make_network(factory("ec2"))
        factory("rds").create_db_subnet_group(
            DBSubnetGroupName="g", DBSubnetGroupDescription="t", SubnetIds=net["subnets"]
        )
        db = create_db(factory("rds"), "twin", {"group": "g", "sg": net["sg"]})
        eni = factory("ec2").describe_network_interfaces(
            Filters=[{"Name": "vpc-id", "Values": [net["vpc"]]}]
        )["NetworkInterfaces"][0]
        answers.append((query(emulator.dns_port, db["Endpoint"]["Address"])["answers"], eni["PrivateIpAddress"]))
    for got, expected in answers:
        assert got == [expected]


def test_malformed_and_non_query_messages():
    from patches.dns_server import build_response

    assert build_response(b"\x00\x01") is None  # shorter than a header: dropped
    bad = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x05abc"  # truncated name
    assert build_response(bad)[3] & 0xF == 1  # FORMERR
    notify = struct.pack("!HHHHHH", 8, 4 << 11, 0, 0, 0, 0)
    assert build_response(notify)[3] & 0xF == 4  # NOTIMP
