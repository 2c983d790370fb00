#!/usr/bin/env python3
"""A local TiDB Cloud: the private link connection API (v1beta1) with HTTP Digest
authentication, acting as TiDB Cloud's AWS account against the local emulator.

    python tests/tidb_cloud_double/double.py --emulator-url http://127.0.0.1:P
        [--port 0] [--host 127.0.0.1] [--account-id 380838443567]
        [--az-ids use1-az1,use1-az2,use1-az4] [--region us-east-1]
        [--public-key K] [--private-key S] [--cluster ID ...]
        [--algorithms MD5] [--rate-limit N] [--faults JSON]
        [--watch-pid PID] [--log-requests]

Prints ``{"event": "ready", "port": N, "pid": P}`` on stdout once it listens.
See README.md beside this file for what it emulates and its control routes.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR_DIR = os.path.join(os.path.dirname(HERE), "emulator")
sys.path.insert(0, EMULATOR_DIR)
from launch import _alive, _watch  # noqa: E402  (the emulator's --watch-pid, same semantics)
import control  # noqa: E402  (the emulator's control routes: account bootstrap)

log = logging.getLogger("tidb-cloud-double")

STATES = ("CREATING", "ACTIVE", "FAILED", "PENDING_ACCEPTANCE", "DELETING")
API = re.compile(r"^/v1beta1/clusters/(?P<cluster>[^/:]+)/privateLinkConnections(?P<rest>.*)$")
# gRPC status codes, which TiDB Cloud's `Status.code` carries for API errors; the gateway's own
# codes (49900001, 49900007) for authentication and rate limiting, as TiDB Cloud documents them.
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, UNIMPLEMENTED, UNAVAILABLE = 3, 5, 6, 12, 14
BAD_KEY, RATE_LIMITED = 49900001, 49900007


class Dropped(Exception):
    """A lost answer: the call is made, and its connection closed without a response."""


class ApiError(Exception):
    def __init__(self, http: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.http, self.code, self.message, self.headers = http, code, message, headers or {}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Connection:
    id: str
    cluster_id: str
    display_name: str
    service_name: str
    created_by: str
    state: str = "CREATING"
    message: str = ""
    endpoint_id: str = ""
    az_ids: list[str] = field(default_factory=list)
    create_time: str = field(default_factory=now)
    update_time: str | None = None
    hold_reads: int = 0  # reads left in CREATING / DELETING before the next step
    hold_until: float = 0.0  # time.monotonic() before which it stays CREATING (--creating-seconds)
    fail_with: str = ""  # fault injection: FAILED with this message instead of creating the endpoint
    endpoint_at: float = 0.0  # time.monotonic() once its endpoint existed: older reads of AWS do not judge it
    creating_endpoint: bool = False  # a read is creating its endpoint right now

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.message, self.update_time = state, message, now()

    def to_api(self, region: str, detail: bool = False) -> dict[str, Any]:
        service: dict[str, Any] = {"name": self.service_name, "region": region}
        if self.endpoint_id:
            service["endpointId"] = self.endpoint_id
            service["availabilityZoneIds"] = list(self.az_ids)
        body: dict[str, Any] = {
            "privateLinkConnectionId": self.id,
            "clusterId": self.cluster_id,
            "displayName": self.display_name,
            "state": self.state,
            "createdBy": self.created_by,
            "createTime": self.create_time,
            "updateTime": self.update_time,
            "type": "AWS_ENDPOINT_SERVICE",
            "awsEndpointService": service,
        }
        if self.message:
            body["message"] = self.message
        if detail:
            body["attachedDomains"] = []  # "only display in Get API"
        return body


class TiDBCloudAws:
    """TiDB Cloud's side of PrivateLink: its own VPC, one subnet per configured AZ ID, and an
    interface endpoint per connection, all in its account in the emulator."""

    def __init__(self, emulator_url: str, account_id: str, region: str, az_ids: list[str]):
        self.emulator_url, self.account_id, self.region, self.az_ids = emulator_url, account_id, region, az_ids
        self._ec2: Any = None
        self._subnets: dict[str, tuple[str, str]] | None = None  # AZ name -> (subnet id, AZ id)
        self._vpc = ""
        self._sg = ""
        # Its client and network are made once, whichever read comes first (reads run in parallel).
        self._setup_lock = threading.RLock()
        # One read of the endpoints serves every request that arrived before it began.
        self._states_lock = threading.Lock()
        self._states: tuple[float, dict[str, str]] = (float("-inf"), {})

    def ec2(self) -> Any:
        with self._setup_lock:
            return self._ec2 or self._make_ec2()

    def _make_ec2(self) -> Any:
        import boto3
        from botocore.config import Config

        # TiDB Cloud retries AWS's throttling as any AWS client does; no read waits on it.
        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        key = os.environ.get("TIDB_CLOUD_AWS_ACCESS_KEY_ID"), os.environ.get("TIDB_CLOUD_AWS_SECRET_ACCESS_KEY")
        if all(key):
            # Ordinary credentials of TiDB Cloud's account, as TiDB Cloud acts with its own
            # (the local stack makes such a user and passes its keys).
            credentials = {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}
        else:
            # Standalone (IAM enforcement off): bootstrap the account with an administrator
            # role the emulator's management account assumes.
            role_arn = control.bootstrap_account(self.emulator_url, self.account_id, "tidb-cloud")
            sts = boto3.client(
                "sts", endpoint_url=self.emulator_url, region_name=self.region,
                aws_access_key_id=control.MANAGEMENT_KEY[0], aws_secret_access_key=control.MANAGEMENT_KEY[1],
                config=config,
            )
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="tidb-cloud-double")["Credentials"]
            credentials = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                           "aws_session_token": creds["SessionToken"]}
        self._ec2 = boto3.client("ec2", endpoint_url=self.emulator_url, region_name=self.region, config=config,
                                 **credentials)
        return self._ec2

    def subnets(self) -> dict[str, tuple[str, str]]:
        with self._setup_lock:
            return self._subnets or self._make_subnets()

    def _make_subnets(self) -> dict[str, tuple[str, str]]:
        """Created on first use: a VPC with one subnet in each configured AZ ID."""
        ec2 = self.ec2()
        zones = ec2.describe_availability_zones()["AvailabilityZones"]
        name_of = {z["ZoneId"]: z["ZoneName"] for z in zones}
        missing = [az for az in self.az_ids if az not in name_of]
        if missing:
            raise RuntimeError(f"AZ IDs {missing} do not exist in {self.region}")
        cidr = ipaddress.ip_network("10.250.0.0/16")
        self._vpc = ec2.create_vpc(CidrBlock=str(cidr), TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "tidb-cloud-double"}]}
        ])["Vpc"]["VpcId"]
        self._sg = ec2.create_security_group(
            GroupName="tidb-cloud-endpoints", Description="TiDB Cloud double endpoints", VpcId=self._vpc
        )["GroupId"]
        subnets = {}
        for block, az_id in zip(cidr.subnets(new_prefix=24), self.az_ids):
            subnet = ec2.create_subnet(VpcId=self._vpc, CidrBlock=str(block), AvailabilityZone=name_of[az_id])["Subnet"]
            subnets[subnet["AvailabilityZone"]] = (subnet["SubnetId"], subnet["AvailabilityZoneId"])
        self._subnets = subnets
        return subnets

    def create_endpoint(self, service_name: str) -> tuple[str, str, list[str]]:
        """-> (endpoint id, endpoint state, AZ IDs); raises ValueError(message) when TiDB Cloud
        would report the connection FAILED."""
        from botocore.exceptions import ClientError

        ec2 = self.ec2()
        subnets = self.subnets()
        try:
            [detail] = ec2.describe_vpc_endpoint_services(ServiceNames=[service_name])["ServiceDetails"]
            shared = [az for az in detail.get("AvailabilityZones", []) if az in subnets]
            if not shared:
                raise ValueError(
                    f"endpoint service {service_name} has no availability zone in common with TiDB Cloud "
                    f"({', '.join(self.az_ids)})"
                )
            endpoint = ec2.create_vpc_endpoint(
                VpcEndpointType="Interface", VpcId=self._vpc, ServiceName=service_name,
                SubnetIds=[subnets[az][0] for az in shared], SecurityGroupIds=[self._sg],
            )["VpcEndpoint"]
        except ClientError as error:
            code, message = error.response["Error"].get("Code"), error.response["Error"].get("Message")
            if code == "InvalidServiceName":
                raise ValueError(
                    f"endpoint service {service_name} does not exist or does not allow TiDB Cloud's account "
                    f"{self.account_id} ({code}: {message})"
                ) from None
            raise ValueError(f"creating the endpoint failed: {code}: {message}") from None
        return endpoint["VpcEndpointId"], endpoint["State"], sorted(subnets[az][1] for az in shared)

    def endpoint_states(self, asked_at: float) -> tuple[float, dict[str, str]]:
        """(when the read began, the state of every endpoint in TiDB Cloud's account): one
        paginated read begun at or after ``asked_at`` (time.monotonic()), shared by the requests
        that wait for it, so a hundred clients polling at once cost AWS a read or two, not a
        hundred. An endpoint not listed is gone."""
        with self._states_lock:
            if self._states[0] < asked_at:
                began = time.monotonic()
                pages = self.ec2().get_paginator("describe_vpc_endpoints").paginate()
                self._states = began, {e["VpcEndpointId"]: e["State"] for page in pages for e in page["VpcEndpoints"]}
            return self._states

    def delete_endpoint(self, endpoint_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.ec2().delete_vpc_endpoints(VpcEndpointIds=[endpoint_id])
        except ClientError as error:  # already gone: deleting is idempotent
            log.warning("deleting %s: %s", endpoint_id, error)


class Double:
    """The API's state and rules; the HTTP handler only translates."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.public_key, self.private_key = args.public_key, args.private_key
        self.algorithms = [a.strip().upper() for a in args.algorithms.split(",") if a.strip()]
        self.clusters = set(args.cluster)
        self.aws = TiDBCloudAws(args.emulator_url, args.account_id, args.region, args.az_ids)
        self.lock = threading.RLock()
        self.connections: dict[str, Connection] = {}
        self.nonces: dict[str, tuple[float, set[int]]] = {}
        self.opaque = secrets.token_hex(16)
        self.faults: dict[str, Any] = {}
        self.window: tuple[int, int] = (0, 0)  # (minute, requests in it)
        self.requests = 0
        # Every API request by "METHOD route status", challenges included: what a benchmark counts.
        self.answered: Counter[str] = Counter()
        self.reset_faults(json.loads(args.faults) if args.faults else {})

    # -- control -------------------------------------------------------------------------------

    def reset_faults(self, faults: dict[str, Any]) -> None:
        self.faults = {"fail_next_create": "", "throttle": 0, "retry_after": 0, "unavailable": 0,
                       "creating_reads": 0, "deleting_reads": 0, "drop_create": 0, "drop_delete": 0}
        self.set_faults(faults)

    def set_faults(self, faults: dict[str, Any]) -> None:
        unknown = set(faults) - set(self.faults)
        if unknown:
            raise ApiError(400, INVALID_ARGUMENT, f"unknown faults {sorted(unknown)}; known: {sorted(self.faults)}")
        wrong = sorted(k for k, v in faults.items() if type(v) is not type(self.faults[k]) or (isinstance(v, int) and v < 0))
        if wrong:
            raise ApiError(400, INVALID_ARGUMENT, f"faults {wrong}: want a message for fail_next_create, "
                                                  "a count or seconds (an integer >= 0) for the others")
        self.faults.update(faults)

    def control(self, method: str, path: str, body: Any) -> dict[str, Any]:
        with self.lock:
            if (method, path) == ("GET", "/_double/state"):
                return {"connections": [vars(c) for c in self.connections.values()], "faults": self.faults,
                        "clusters": sorted(self.clusters), "accountId": self.args.account_id,
                        "requests": self.requests, "answered": dict(self.answered)}
            if (method, path) == ("POST", "/_double/faults"):
                self.set_faults(body if isinstance(body, dict) else {})
                return {"faults": self.faults}
            if (method, path) == ("POST", "/_double/api-key"):
                # The key pair TiDB Cloud accepts from now on (a rotated or deleted key).
                keys = body if isinstance(body, dict) else {}
                if not all(isinstance(keys.get(k), str) and keys[k] for k in ("public_key", "private_key")):
                    raise ApiError(400, INVALID_ARGUMENT, 'body must be {"public_key": "...", "private_key": "..."}')
                self.public_key, self.private_key = keys["public_key"], keys["private_key"]
                return {"public_key": self.public_key}
            if (method, path) == ("POST", "/_double/clusters"):
                cluster = (body or {}).get("clusterId") if isinstance(body, dict) else None
                if not isinstance(cluster, str) or not cluster:
                    raise ApiError(400, INVALID_ARGUMENT, "body must be {\"clusterId\": \"...\"}")
                self.clusters.add(cluster)
                return {"clusters": sorted(self.clusters)}
            if (method, path) == ("POST", "/_double/reset"):
                for connection in self.connections.values():
                    if connection.endpoint_id:
                        self.aws.delete_endpoint(connection.endpoint_id)
                self.connections.clear()
                self.answered.clear()
                self.reset_faults({})
                self.clusters = set(self.args.cluster)
                self.public_key, self.private_key = self.args.public_key, self.args.private_key
                return {}
        raise ApiError(404, NOT_FOUND, f"no control route {method} {path}")

    # -- digest (RFC 7616) ---------------------------------------------------------------------

    def challenges(self, stale: bool = False) -> list[str]:
        nonce = secrets.token_urlsafe(24)
        with self.lock:
            expired = [n for n, (issued, _) in self.nonces.items() if time.monotonic() - issued > 2 * self.args.nonce_ttl]
            for old in expired:
                del self.nonces[old]
            self.nonces[nonce] = (time.monotonic(), set())
        return [
            f'Digest realm="{self.args.realm}", qop="auth", algorithm={algorithm}, nonce="{nonce}", '
            f'opaque="{self.opaque}", stale={"true" if stale else "false"}'
            for algorithm in self.algorithms
        ]

    def authenticate(self, method: str, target: str, header: str | None) -> None:
        """Raises ApiError(401) with fresh challenges unless `header` answers one of ours."""
        def refuse(message: str, stale: bool = False) -> ApiError:
            return ApiError(401, BAD_KEY, message, {"WWW-Authenticate": self.challenges(stale)})  # type: ignore[dict-item]

        if not header or not header.lower().startswith("digest "):
            raise refuse("authentication required")
        params = parse_params(header[len("digest "):])
        algorithm = params.get("algorithm", "MD5").upper()
        if params.get("username") != self.public_key:
            raise refuse("public_key not found")
        if algorithm not in self.algorithms or params.get("qop") != "auth" or params.get("realm") != self.args.realm:
            raise refuse("unsupported digest parameters")
        if params.get("uri") != target:
            raise refuse("digest uri does not match the request")
        if params.get("opaque") != self.opaque:
            raise refuse("digest opaque does not match")
        try:
            nc = int(params.get("nc", ""), 16)
        except ValueError:
            raise refuse("digest nc is missing") from None
        with self.lock:
            issued = self.nonces.get(params.get("nonce", ""))
            if issued is None or time.monotonic() - issued[0] > self.args.nonce_ttl:
                raise refuse("nonce expired", stale=issued is not None)
            expected = digest_response(
                algorithm, self.public_key, self.args.realm, self.private_key, method, target,
                params["nonce"], params.get("nc", ""), params.get("cnonce", ""),
            )
            if not secrets.compare_digest(params.get("response", ""), expected):
                raise refuse("invalid digest response")
            if nc in issued[1]:
                raise refuse("nonce count reused", stale=True)
            issued[1].add(nc)

    # -- rate limit and faults -----------------------------------------------------------------

    def count(self, method: str, path: str, status: int | str) -> None:
        match = API.match(path)
        route = f"/clusters/{{id}}/privateLinkConnections{re.sub(r'^/[^/:]+', '/{id}', match['rest'])}" if match else path
        with self.lock:
            self.answered[f"{method} {route} {status}"] += 1

    def rate_limit(self) -> dict[str, str]:
        """TiDB Cloud's rate-limit headers; 429 when `--rate-limit` is exceeded or a throttle fault is armed."""
        limit = self.args.rate_limit or 100
        with self.lock:
            self.requests += 1
            minute = int(time.time() // 60)
            count = self.window[1] + 1 if self.window[0] == minute else 1
            self.window = (minute, count)
            reset = str(60 - int(time.time()) % 60)
            headers = {"X-Ratelimit-Limit-Minute": str(limit),
                       "X-Ratelimit-Remaining-Minute": str(max(limit - count, 0)), "X-Ratelimit-Reset": reset}
            if self.faults["throttle"] > 0 or (self.args.rate_limit and count > limit):
                if self.faults["throttle"] > 0:
                    self.faults["throttle"] -= 1
                    reset = str(self.faults["retry_after"])
                    headers.update({"X-Ratelimit-Remaining-Minute": "0", "X-Ratelimit-Reset": reset})
                raise ApiError(429, RATE_LIMITED,
                               f"The request exceeded the limit of {limit} times per apikey per minute.",
                               {**headers, "Retry-After": reset})
            if self.faults["unavailable"] > 0:
                self.faults["unavailable"] -= 1
                raise ApiError(503, UNAVAILABLE, "the service is unavailable; try again later", headers)
            return headers

    # -- the API -------------------------------------------------------------------------------

    def api(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        match = API.match(path)
        if not match:
            raise ApiError(404, NOT_FOUND, "Not Found")
        cluster, rest = match["cluster"], match["rest"]
        single = rest.startswith("/") and "/" not in rest[1:] and ":" not in rest
        if method == "GET" and (rest == "" or single):
            self.work(cluster, rest[1:] if single else None)
        with self.lock:
            if cluster not in self.clusters:
                raise ApiError(404, NOT_FOUND, f"cluster {cluster} not found")
            if rest == ":getAvailabilityZones" and method == "GET":
                return {"accountId": self.args.account_id, "azIds": list(self.args.az_ids)}
            if rest == "" and method == "GET":
                return self.list(cluster, query)
            if rest == "" and method == "POST":
                return self.dropping("drop_create", self.create(cluster, body))
            if rest.startswith("/") and (rest.endswith(":attachDomains") or rest.endswith(":detachDomains")):
                raise ApiError(501, UNIMPLEMENTED, "domains are not emulated")
            if single:
                connection = self.find(cluster, rest[1:])
                if method == "GET":
                    return connection.to_api(self.args.region, detail=True)
                if method == "DELETE":
                    return self.dropping("drop_delete", self.delete(connection))
            if rest in ("", ":getAvailabilityZones"):
                raise ApiError(405, UNIMPLEMENTED, f"{method} is not allowed on {path}")
            raise ApiError(404, NOT_FOUND, f"no route {method} {path}")

    def create(self, cluster: str, body: Any) -> dict[str, Any]:
        plc = body.get("privateLinkConnection") if isinstance(body, dict) else None
        if not isinstance(plc, dict):
            raise ApiError(400, INVALID_ARGUMENT, "body must be {\"privateLinkConnection\": {...}}")
        service = plc.get("awsEndpointService")
        name = service.get("name") if isinstance(service, dict) else None
        display = plc.get("displayName")
        if plc.get("clusterId") not in (None, cluster):
            raise ApiError(400, INVALID_ARGUMENT, f"clusterId {plc.get('clusterId')!r} does not match the path")
        if plc.get("type") != "AWS_ENDPOINT_SERVICE":
            raise ApiError(400, INVALID_ARGUMENT, f"type must be AWS_ENDPOINT_SERVICE, not {plc.get('type')!r}")
        if not isinstance(display, str) or not 0 < len(display) <= 64:
            raise ApiError(400, INVALID_ARGUMENT, "displayName must be a string of 1 to 64 characters")
        if not isinstance(name, str) or not re.fullmatch(r"com\.amazonaws\.vpce\.[a-z0-9-]+\.vpce-svc-[0-9a-f]+", name):
            raise ApiError(400, INVALID_ARGUMENT,
                           "awsEndpointService.name must be an endpoint service name com.amazonaws.vpce.<region>.vpce-svc-...")
        read_only = sorted(set(plc) & {"privateLinkConnectionId", "state", "message", "createdBy", "createTime"})
        if read_only or "endpointId" in service:
            raise ApiError(400, INVALID_ARGUMENT, f"read-only fields given: {read_only or ['awsEndpointService.endpointId']}")
        for existing in self.connections.values():
            if existing.cluster_id == cluster and existing.service_name == name and existing.state not in ("FAILED", "DELETING"):
                raise ApiError(409, ALREADY_EXISTS,
                               f"private link connection {existing.id} to {name} already exists")
        connection = Connection(
            id=f"plc-{secrets.token_hex(8)}", cluster_id=cluster, display_name=display, service_name=name,
            created_by=f"apikey-{self.public_key}", hold_reads=int(self.faults["creating_reads"]),
            hold_until=time.monotonic() + self.args.creating_seconds,
            fail_with=self.faults["fail_next_create"],
        )
        self.faults["fail_next_create"] = ""
        self.connections[connection.id] = connection
        return connection.to_api(self.args.region)

    def dropping(self, fault: str, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer of a call that is made; unless ``fault`` is armed: then the answer is lost."""
        if self.faults[fault] > 0:
            self.faults[fault] -= 1
            raise Dropped()
        return answer

    def find(self, cluster: str, connection_id: str) -> Connection:
        connection = self.connections.get(connection_id)
        if connection is None or connection.cluster_id != cluster:
            raise ApiError(404, NOT_FOUND, f"private link connection {connection_id} not found")
        return connection

    def list(self, cluster: str, query: dict[str, list[str]]) -> dict[str, Any]:
        state = query.get("state", [None])[0]
        if state is not None and state not in STATES:
            raise ApiError(400, INVALID_ARGUMENT, f"state must be one of {', '.join(STATES)}")
        try:
            size = int(query.get("pageSize", ["10"])[0])
            offset = int(query.get("pageToken", ["0"])[0] or 0)
        except ValueError:
            raise ApiError(400, INVALID_ARGUMENT, "pageSize and pageToken must be what this API returned") from None
        if not 0 < size <= 100 or offset < 0:
            raise ApiError(400, INVALID_ARGUMENT, "pageSize must be 1 to 100")
        mine = [c for c in self.connections.values() if c.cluster_id == cluster and state in (None, c.state)]
        page: dict[str, Any] = {
            "privateLinkConnections": [c.to_api(self.args.region) for c in mine[offset:offset + size]],
            "totalSize": len(mine),
        }
        if offset + size < len(mine):
            page["nextPageToken"] = str(offset + size)
        return page

    def delete(self, connection: Connection) -> dict[str, Any]:
        if connection.state != "DELETING":
            if connection.endpoint_id:
                self.aws.delete_endpoint(connection.endpoint_id)
            connection.hold_reads = int(self.faults["deleting_reads"])
            connection.set_state("DELETING")
        return connection.to_api(self.args.region)

    def work(self, cluster: str, connection_id: str | None) -> None:
        """One step of TiDB Cloud's work on each connection a client reads (``connection_id``, or
        all of the cluster's), done before the answer. Its AWS calls (creating an endpoint,
        reading the endpoints' states) run outside the lock, as TiDB Cloud's answers do not wait
        on AWS: a read of one connection never queues behind another's AWS call."""
        with self.lock:
            looked = [c for c in self.connections.values()
                      if c.cluster_id == cluster and connection_id in (None, c.id)]
            due = [c for c in looked if self.advance(c)]
            watched = [c for c in looked if c.endpoint_id and c.state in ("PENDING_ACCEPTANCE", "ACTIVE")]
        asked_at = time.monotonic()
        created: dict[str, tuple[str, str, list[str]] | str] = {}
        try:
            for connection in due:
                try:
                    created[connection.id] = self.aws.create_endpoint(connection.service_name)
                except ValueError as failure:  # why TiDB Cloud reports the connection FAILED
                    created[connection.id] = str(failure)
        finally:
            with self.lock:
                orphans = [c for c in due if not self.took_endpoint(c, created.get(c.id))]
            for connection in orphans:
                self.aws.delete_endpoint(created[connection.id][0])
        if not watched:
            return
        read_at, states = self.aws.endpoint_states(asked_at)
        with self.lock:
            for connection in watched:
                if self.connections.get(connection.id) is connection and connection.endpoint_at <= read_at:
                    self.follow(connection, states.get(connection.endpoint_id, "deleted"))

    def took_endpoint(self, connection: Connection, answer: tuple[str, str, list[str]] | str | None) -> bool:
        """Under the lock: the outcome of creating the connection's endpoint (None: the attempt
        raised). False when the connection was deleted meanwhile: its new endpoint is an orphan."""
        connection.creating_endpoint = False
        if answer is None:
            return True
        if isinstance(answer, str):
            connection.set_state("FAILED", answer)
            return True
        if self.connections.get(connection.id) is not connection or connection.state != "CREATING":
            return False
        connection.endpoint_id, aws_state, connection.az_ids = answer
        connection.endpoint_at = time.monotonic()
        self.follow(connection, aws_state)
        return True

    def advance(self, connection: Connection) -> bool:
        """The part of a step that needs no AWS call, under the lock; True when the connection's
        endpoint is to be created now (the caller does it, outside the lock)."""
        if connection.state in ("CREATING", "DELETING") and connection.hold_reads > 0:
            connection.hold_reads -= 1
            return False
        if connection.state == "CREATING" and (time.monotonic() < connection.hold_until or connection.creating_endpoint):
            return False
        if connection.state == "DELETING":
            del self.connections[connection.id]
        elif connection.state == "CREATING":
            if connection.fail_with:
                connection.set_state("FAILED", connection.fail_with)
                return False
            connection.creating_endpoint = True
            return True
        return False

    def follow(self, connection: Connection, aws_state: str) -> None:
        state, message = {
            "pendingAcceptance": ("PENDING_ACCEPTANCE", ""),
            "pending": ("PENDING_ACCEPTANCE", ""),
            "available": ("ACTIVE", ""),
            "rejected": ("FAILED", f"the endpoint service owner rejected endpoint {connection.endpoint_id}"),
        }.get(aws_state, ("FAILED", f"endpoint {connection.endpoint_id} is {aws_state}"))
        if state != connection.state:
            connection.set_state(state, message)


def parse_params(text: str) -> dict[str, str]:
    """`k=v, k="quoted, \\"escaped\\""` -> dict (keys lower-cased)."""
    params = {}
    for match in re.finditer(r'\s*([^\s=,]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*,?', text):
        value = match[2] if match[2] is not None else (match[3] or "").strip()
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", value)
    return params


def digest_response(algorithm: str, user: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, nc: str, cnonce: str) -> str:
    def h(data: str) -> str:
        return hashlib.new("sha256" if algorithm == "SHA-256" else "md5", data.encode()).hexdigest()

    return h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:{nc}:{cnonce}:auth:{h(f'{method}:{uri}')}")


def make_handler(double: Double, log_requests: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tidb-cloud-double"

        def log_message(self, format: str, *args: Any) -> None:
            if log_requests:
                super().log_message(format, *args)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers: dict[str, Any] = {}
            try:
                body = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise ApiError(400, INVALID_ARGUMENT, "the body is not JSON") from None
                if url.path.startswith("/_double/"):
                    self.reply(200, double.control(self.command, url.path, body), headers)
                    return
                double.authenticate(self.command, self.path, self.headers.get("Authorization"))
                headers = double.rate_limit()
                status, answer = 200, double.api(self.command, url.path, parse_qs(url.query), body)
            except Dropped:  # the change is made; the connection closes without an answer
                double.count(self.command, url.path, "dropped")
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            except ApiError as error:
                status, answer = error.http, {"code": error.code, "message": error.message, "details": []}
                headers.update(error.headers)
            except Exception as error:  # the double's own bug: say so, as a 500
                log.exception("internal error")
                status, answer = 500, {"code": 13, "message": f"double internal error: {error}", "details": []}
            if not url.path.startswith("/_double/"):
                double.count(self.command, url.path, status)
            self.reply(status, answer, headers)

        def reply(self, status: int, body: dict[str, Any], headers: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                for one in value if isinstance(value, list) else [value]:
                    self.send_header(name, one)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_any

    return Handler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulator-url", required=True, help="the AWS emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--account-id", default="380838443567", help="TiDB Cloud's AWS account in the emulator")
    parser.add_argument("--az-ids", default="use1-az1,use1-az2,use1-az4", help="TiDB Cloud's AZ IDs (comma-separated)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--public-key", default=env("TIDB_CLOUD_DOUBLE_PUBLIC_KEY", "double-public-key"))
    parser.add_argument("--private-key", default=env("TIDB_CLOUD_DOUBLE_PRIVATE_KEY", "double-private-key"),
                        help="the accepted private key (or TIDB_CLOUD_DOUBLE_PRIVATE_KEY)")
    parser.add_argument("--cluster", action="append", default=[], help="a cluster ID it knows (repeatable)")
    parser.add_argument("--realm", default="tidb.cloud")
    parser.add_argument("--algorithms", default="MD5",
                        help="digest algorithms offered, in order (MD5 alone is what TiDB Cloud is reported to send)")
    parser.add_argument("--nonce-ttl", type=float, default=300.0, help="seconds a nonce is accepted")
    parser.add_argument("--creating-seconds", type=float, default=0.0,
                        help="seconds a new connection stays CREATING before TiDB Cloud makes its endpoint")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests a minute before 429 (0: unlimited)")
    parser.add_argument("--faults", help="JSON of faults armed at start, as POST /_double/faults")
    parser.add_argument("--watch-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--log-requests", action="store_true")
    args = parser.parse_args(argv)
    args.az_ids = [az.strip() for az in args.az_ids.split(",") if az.strip()]
    args.cluster = args.cluster or ["1379661944646413143"]
    if not re.fullmatch(r"\d{12}", args.account_id):
        parser.error("--account-id must be 12 digits")
    if not set(a.strip().upper() for a in args.algorithms.split(",")) <= {"MD5", "SHA-256"}:
        parser.error("--algorithms: MD5 and/or SHA-256")
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tidb-cloud-double %(levelname)s: %(message)s")
    if args.watch_pid:
        if not _alive(args.watch_pid):
            sys.exit(f"--watch-pid {args.watch_pid}: no such process")
        threading.Thread(target=_watch, args=(args.watch_pid,), name="watch-pid", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    double = Double(args)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(double, args.log_requests))
    server.daemon_threads = True
    print(json.dumps({"event": "ready", "port": server.server_port, "pid": os.getpid()}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
