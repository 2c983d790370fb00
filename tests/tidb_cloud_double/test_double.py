"""The TiDB Cloud double against its contract and TiDB Cloud's behaviour: every answer is
validated against the OpenAPI file beside this test; digest authentication is checked with an
independent client; a connection's states follow what happens to its endpoint in the emulator."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import http.client as http_client
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import boto3
import pytest
import yaml
from botocore.config import Config
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "tidbcloud-privatelink-openapi.yaml")
DOUBLE = os.path.join(HERE, "double.py")
REGION = "us-east-1"
PUBLIC, PRIVATE = "test-public-key", "test-private-key-" + secrets.token_hex(8)
CLUSTER = "10140100115280519574"
COLLECTION = "/v1beta1/clusters/{clusterId}/privateLinkConnections"
ITEM = COLLECTION + "/{privateLinkConnectionId}"
ZONES = COLLECTION + ":getAvailabilityZones"


def _emulator_fixtures() -> Any:
    """tests/emulator/conftest.py's launcher, loaded under its own name (two modules named
    `conftest` cannot share sys.modules)."""
    spec = importlib.util.spec_from_file_location("emulator_fixtures", os.path.join(HERE, "..", "emulator", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["emulator_fixtures"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


emulator_fixtures = _emulator_fixtures()


# -- the contract ---------------------------------------------------------------------------------

def _load_spec() -> dict[str, Any]:
    with open(SPEC, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        for prop in schema.get("properties", {}).values():
            # The swagger 2 -> OpenAPI 3 conversion wrote enum-typed fields (state, type) as
            # `allOf: [<string enum>], type: object`; TiDB Cloud sends strings. Drop the stray type.
            refs = [s.get("$ref", "").rsplit("/", 1)[-1] for s in prop.get("allOf", [])]
            if prop.get("type") == "object" and refs and all(schemas.get(r, {}).get("type") == "string" for r in refs):
                del prop["type"]
        # Stricter than the file: a misspelt field must fail, not pass as an extra.
        if "properties" in schema and name != "Any":
            schema["additionalProperties"] = False
    return spec


CONTRACT = _load_spec()


def _validator(cls: Any, schema: dict[str, Any]) -> Any:
    return cls({**schema, "components": CONTRACT["components"]})


def check(method: str, template: str, status: int, body: Any) -> Any:
    """Validates an answer against the operation's 200 or default (Status) schema."""
    responses = CONTRACT["paths"][template][method.lower()]["responses"]
    schema = responses["200" if status == 200 else "default"]["content"]["application/json"]["schema"]
    _validator(OAS30ReadValidator, schema).validate(body)
    return body


def check_request(template: str, body: Any) -> None:
    schema = CONTRACT["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"]
    _validator(OAS30WriteValidator, schema).validate(body)


def test_the_contract_checks_are_strict():
    good = {"privateLinkConnectionId": "plc-1", "clusterId": "1", "displayName": "d", "state": "ACTIVE",
            "type": "AWS_ENDPOINT_SERVICE", "awsEndpointService": {"name": "n", "endpointId": "vpce-1"}}
    check("GET", ITEM, 200, good)
    for bad in [{**good, "state": "RUNNING"}, {**good, "endpointID": "x"}, {k: v for k, v in good.items() if k != "type"}]:
        with pytest.raises(Exception):
            check("GET", ITEM, 200, bad)
    with pytest.raises(Exception):  # read-only fields are not for requests
        check_request(COLLECTION, {"privateLinkConnection": {**good}})


# -- processes and clients --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def emulator() -> Any:
    process, ready = emulator_fixtures.start_emulator("--watch-pid", str(os.getpid()))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        yield url
        found = emulator_fixtures.control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not found, "the emulator met problems:\n" + "\n".join(found)


def start_double(emulator_url: str, *extra: str) -> tuple[subprocess.Popen, str]:
    log = tempfile.NamedTemporaryFile(prefix="tidb-cloud-double-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, DOUBLE, "--emulator-url", emulator_url, *extra],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = process.stdout.readline()  # type: ignore[union-attr]
    if not line:
        process.wait(timeout=10)
        with open(log.name, encoding="utf-8", errors="replace") as err:
            raise RuntimeError(f"the double did not start: {err.read()}")
    ready = json.loads(line)
    assert ready["event"] == "ready" and ready["pid"] == process.pid
    return process, f"http://127.0.0.1:{ready['port']}"


TIDB_ACCOUNT = str(random.randint(10**11, 10**12 - 1))


@pytest.fixture(scope="session")
def double_url(emulator: str) -> Any:
    process, url = start_double(
        emulator, "--account-id", TIDB_ACCOUNT, "--cluster", CLUSTER, "--public-key", PUBLIC,
        "--private-key", PRIVATE, "--watch-pid", str(os.getpid()),
    )
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def fresh_double(request: pytest.FixtureRequest) -> Any:
    yield
    if "double_url" in request.fixturenames:
        http("POST", request.getfixturevalue("double_url") + "/_double/reset", {})


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def parse_challenge(header: str) -> dict[str, str]:
    import re

    assert header.startswith("Digest "), header
    return {m[1].lower(): m[2] if m[2] is not None else m[3]
            for m in re.finditer(r'([\w-]+)=(?:"([^"]*)"|([^,\s]+))', header)}


class Api:
    """A small, independent RFC 7616 client: one challenge per request, then the answer."""

    def __init__(self, base: str, user: str = PUBLIC, password: str = PRIVATE, algorithm: str = "MD5"):
        self.base, self.user, self.password, self.algorithm = base, user, password, algorithm

    def authorization(self, method: str, path: str, challenge: dict[str, str], nc: int = 1) -> str:
        def h(text: str) -> str:
            return hashlib.new("sha256" if self.algorithm == "SHA-256" else "md5", text.encode()).hexdigest()

        cnonce, count = secrets.token_hex(8), f"{nc:08x}"
        ha1, ha2 = h(f"{self.user}:{challenge['realm']}:{self.password}"), h(f"{method}:{path}")
        response = h(f"{ha1}:{challenge['nonce']}:{count}:{cnonce}:auth:{ha2}")
        return (f'Digest username="{self.user}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", '
                f'uri="{path}", algorithm={self.algorithm}, response="{response}", qop=auth, nc={count}, '
                f'cnonce="{cnonce}", opaque="{challenge["opaque"]}"')

    def challenge(self, method: str, path: str) -> dict[str, str]:
        status, headers, body = http(method, self.base + path)
        assert status == 401, (status, body)
        offered = [parse_challenge(h) for h in headers.get_all("WWW-Authenticate")]
        return next(c for c in offered if c["algorithm"] == self.algorithm)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
        auth = self.authorization(method, path, self.challenge(method, path))
        return http(method, self.base + path, body, {"Authorization": auth})


@pytest.fixture
def api(double_url: str) -> Api:
    return Api(double_url)


def _clients(emulator_url: str, account: str) -> Callable[[str], Any]:
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    sts = boto3.client("sts", endpoint_url=emulator_url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing", config=config)
    role_arn = emulator_fixtures.control.bootstrap_account(emulator_url, account)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="owner")["Credentials"]
    return lambda service: boto3.client(
        service, endpoint_url=emulator_url, region_name=REGION, config=config,
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def endpoint_service(emulator: str, zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c"),
                     allow: bool = True, acceptance: bool = True) -> tuple[Any, dict[str, Any]]:
    """A service owner's NLB and endpoint service in a fresh account -> (its ec2 client, service)."""
    aws = _clients(emulator, emulator_fixtures.new_account())
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
               for i, zone in enumerate(zones, start=1)]
    nlb = aws("elbv2").create_load_balancer(Name="db-nlb", Type="network", Scheme="internal", Subnets=subnets)
    service = ec2.create_vpc_endpoint_service_configuration(
        NetworkLoadBalancerArns=[nlb["LoadBalancers"][0]["LoadBalancerArn"]], AcceptanceRequired=acceptance,
    )["ServiceConfiguration"]
    if allow:
        ec2.modify_vpc_endpoint_service_permissions(
            ServiceId=service["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{TIDB_ACCOUNT}:root"])
    return ec2, service


def create_body(service_name: str, display: str = "orders-db") -> dict[str, Any]:
    body = {"privateLinkConnection": {"clusterId": CLUSTER, "displayName": display, "type": "AWS_ENDPOINT_SERVICE",
                                      "awsEndpointService": {"name": service_name}}}
    check_request(COLLECTION, body)
    return body


def create(api: Api, service_name: str) -> dict[str, Any]:
    status, _, body = api.call("POST", COLLECTION.format(clusterId=CLUSTER), create_body(service_name))
    assert status == 200, body
    return check("POST", COLLECTION, status, body)


def get(api: Api, plc: str) -> tuple[int, Any]:
    status, _, body = api.call("GET", ITEM.format(clusterId=CLUSTER, privateLinkConnectionId=plc))
    check("GET", ITEM, status, body)
    return status, body


# -- authentication -------------------------------------------------------------------------------

def test_digest_challenge_and_answers(api: Api, double_url: str):
    path = ZONES.format(clusterId=CLUSTER)
    status, headers, body = http("GET", double_url + path)
    assert status == 401
    check("GET", ZONES, status, body)
    offered = [parse_challenge(h) for h in headers.get_all("WWW-Authenticate")]
    assert [c["algorithm"] for c in offered] == ["MD5"], "MD5 with qop auth, as TiDB Cloud is reported to offer"
    assert all(c["qop"] == "auth" and c["nonce"] and c["opaque"] and c["realm"] for c in offered)

    status, headers, body = api.call("GET", path)
    assert status == 200, body
    assert check("GET", ZONES, status, body) == {"accountId": TIDB_ACCOUNT, "azIds": ["use1-az1", "use1-az2", "use1-az4"]}
    assert int(headers["X-Ratelimit-Limit-Minute"]) == 100
    assert int(headers["X-Ratelimit-Remaining-Minute"]) < 100 and 0 < int(headers["X-Ratelimit-Reset"]) <= 60


def test_every_request_is_counted_by_route_and_status(api: Api, double_url: str):
    create(api, "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0")  # its service is unknown: FAILED later
    plc = http("GET", double_url + "/_double/state")[2]["connections"][0]["id"]
    get(api, plc)
    assert http("GET", double_url + "/_double/state")[2]["answered"] == {
        "POST /clusters/{id}/privateLinkConnections 401": 1, "POST /clusters/{id}/privateLinkConnections 200": 1,
        "GET /clusters/{id}/privateLinkConnections/{id} 401": 1, "GET /clusters/{id}/privateLinkConnections/{id} 200": 1,
    }, "challenges and answers, IDs folded, the control routes left out"


def test_sha256_is_offered_first_when_asked(emulator: str):
    process, url = start_double(emulator, "--algorithms", "SHA-256,MD5", "--cluster", CLUSTER, "--public-key", PUBLIC,
                                "--private-key", PRIVATE, "--watch-pid", str(os.getpid()))
    try:
        status, headers, _ = http("GET", url + ZONES.format(clusterId=CLUSTER))
        offered = [parse_challenge(h)["algorithm"] for h in headers.get_all("WWW-Authenticate")]
        assert (status, offered) == (401, ["SHA-256", "MD5"]), "the stronger one first (RFC 7616 3.7)"
        for algorithm in offered:
            assert Api(url, algorithm=algorithm).call("GET", ZONES.format(clusterId=CLUSTER))[0] == 200, algorithm
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("user,password", [(PUBLIC, "wrong"), ("someone-else", PRIVATE)])
def test_bad_credentials_get_401_and_a_new_challenge(double_url: str, user: str, password: str):
    status, headers, body = Api(double_url, user, password).call("GET", ZONES.format(clusterId=CLUSTER))
    assert status == 401
    check("GET", ZONES, status, body)
    assert headers.get_all("WWW-Authenticate") and PRIVATE not in json.dumps(body)


def test_a_replaced_api_key_refuses_the_old_one_until_reset(api: Api, double_url: str):
    path = ZONES.format(clusterId=CLUSTER)
    status, _, body = http("POST", double_url + "/_double/api-key", {"public_key": "rotated", "private_key": "new-secret"})
    assert (status, body) == (200, {"public_key": "rotated"}), "the private key is never echoed"
    assert api.call("GET", path)[0] == 401
    assert Api(double_url, "rotated", "new-secret").call("GET", path)[0] == 200
    assert http("POST", double_url + "/_double/api-key", {"public_key": "only"})[0] == 400
    http("POST", double_url + "/_double/reset", {})
    assert api.call("GET", path)[0] == 200


def test_replayed_or_misdirected_answers_are_refused(api: Api):
    path = ZONES.format(clusterId=CLUSTER)
    challenge = api.challenge("GET", path)
    first = api.authorization("GET", path, challenge, nc=1)
    assert http("GET", api.base + path, headers={"Authorization": first})[0] == 200
    assert http("GET", api.base + path, headers={"Authorization": first})[0] == 401, "same nc: a replay"
    second = api.authorization("GET", path, challenge, nc=2)
    assert http("GET", api.base + path, headers={"Authorization": second})[0] == 200, "the nonce stays good"
    other = COLLECTION.format(clusterId=CLUSTER)
    misdirected = api.authorization("GET", path, challenge, nc=3)
    assert http("GET", api.base + other, headers={"Authorization": misdirected})[0] == 401


# -- errors -------------------------------------------------------------------------------------

def test_unknown_cluster_and_connection_are_404(api: Api):
    status, _, body = api.call("GET", ZONES.format(clusterId="999"))
    assert (status, check("GET", ZONES, status, body)["code"]) == (404, 5)
    status, body = get(api, "plc-0000000000000000")
    assert status == 404 and "not found" in body["message"]
    status, _, body = api.call("DELETE", ITEM.format(clusterId=CLUSTER, privateLinkConnectionId="plc-missing"))
    assert status == 404
    check("DELETE", ITEM, status, body)


@pytest.mark.parametrize("mutate", [
    lambda b: b.pop("privateLinkConnection"),
    lambda b: b["privateLinkConnection"].pop("displayName"),
    lambda b: b["privateLinkConnection"].update(type="ALICLOUD_ENDPOINT_SERVICE"),
    lambda b: b["privateLinkConnection"]["awsEndpointService"].update(name="not-a-service"),
    lambda b: b["privateLinkConnection"]["awsEndpointService"].update(endpointId="vpce-0123"),
    lambda b: b["privateLinkConnection"].update(clusterId="42"),
])
def test_bad_bodies_are_400(api: Api, mutate: Callable[[dict[str, Any]], Any]):
    body = copy.deepcopy(create_body("com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"))
    mutate(body)
    status, _, answer = api.call("POST", COLLECTION.format(clusterId=CLUSTER), body)
    assert status == 400, answer
    assert check("POST", COLLECTION, status, answer)["code"] == 3 and answer["message"]


# -- the connection's life ------------------------------------------------------------------------

def test_create_pending_accept_active_delete(api: Api, emulator: str):
    owner, service = endpoint_service(emulator)
    created = create(api, service["ServiceName"])
    assert created["state"] == "CREATING" and "endpointId" not in created["awsEndpointService"]
    plc = created["privateLinkConnectionId"]

    status, pending = get(api, plc)
    assert status == 200 and pending["state"] == "PENDING_ACCEPTANCE", pending
    endpoint = pending["awsEndpointService"]["endpointId"]
    assert pending["awsEndpointService"]["availabilityZoneIds"] == ["use1-az1", "use1-az2"], "only the shared zones"
    [connection] = owner.describe_vpc_endpoint_connections()["VpcEndpointConnections"]
    assert (connection["VpcEndpointId"], connection["VpcEndpointOwner"], connection["VpcEndpointState"]) == (
        endpoint, TIDB_ACCOUNT, "pendingAcceptance")

    assert owner.accept_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[endpoint])["Unsuccessful"] == []
    # Accepted, the endpoint is `pending` for a while (AWS): TiDB Cloud waits, then is ACTIVE.
    status, waiting = get(api, plc)
    assert waiting["state"] == "PENDING_ACCEPTANCE", waiting
    deadline = time.time() + 30
    while time.time() < deadline and waiting["state"] == "PENDING_ACCEPTANCE":
        time.sleep(0.5)
        status, waiting = get(api, plc)
    active = waiting
    assert active["state"] == "ACTIVE" and active["awsEndpointService"]["endpointId"] == endpoint

    status, _, listed = api.call("GET", COLLECTION.format(clusterId=CLUSTER) + "?state=ACTIVE")
    check("GET", COLLECTION, status, listed)
    assert [c["privateLinkConnectionId"] for c in listed["privateLinkConnections"]] == [plc]
    assert listed["totalSize"] == 1 and "nextPageToken" not in listed

    status, _, deleting = api.call("DELETE", ITEM.format(clusterId=CLUSTER, privateLinkConnectionId=plc))
    assert check("DELETE", ITEM, status, deleting)["state"] == "DELETING"
    [connection] = owner.describe_vpc_endpoint_connections()["VpcEndpointConnections"]
    assert connection["VpcEndpointState"] == "deleted", "TiDB Cloud deleted its endpoint"
    assert get(api, plc)[0] == 404
    assert owner.delete_vpc_endpoint_service_configurations(ServiceIds=[service["ServiceId"]])["Unsuccessful"] == []


def test_rejected_connection_fails(api: Api, emulator: str):
    owner, service = endpoint_service(emulator)
    plc = create(api, service["ServiceName"])["privateLinkConnectionId"]
    endpoint = get(api, plc)[1]["awsEndpointService"]["endpointId"]
    owner.reject_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[endpoint])
    failed = get(api, plc)[1]
    assert failed["state"] == "FAILED" and "rejected" in failed["message"]


@pytest.mark.parametrize("case", ["not allowed", "no such service", "no shared zone"])
def test_unusable_services_fail_with_a_message(api: Api, emulator: str, case: str):
    if case == "no such service":
        name, expected = "com.amazonaws.vpce.us-east-1.vpce-svc-00000000000000000", "does not exist"
    else:
        _, service = endpoint_service(emulator, allow=case != "not allowed",
                                      zones=("us-east-1a",) if case == "no shared zone" else ("us-east-1b",))
        name = service["ServiceName"]
        expected = "does not allow TiDB Cloud's account" if case == "not allowed" else "no availability zone in common"
    plc = create(api, name)["privateLinkConnectionId"]
    failed = get(api, plc)[1]
    assert failed["state"] == "FAILED" and expected in failed["message"], failed
    assert "endpointId" not in failed["awsEndpointService"]


def test_a_second_connection_to_the_same_service_is_refused(api: Api, emulator: str):
    _, service = endpoint_service(emulator)
    create(api, service["ServiceName"])
    status, _, body = api.call("POST", COLLECTION.format(clusterId=CLUSTER), create_body(service["ServiceName"]))
    assert status == 409 and check("POST", COLLECTION, status, body)["code"] == 6


def test_list_pages(api: Api, emulator: str):
    for _ in range(3):
        create(api, endpoint_service(emulator)[1]["ServiceName"])
    path = COLLECTION.format(clusterId=CLUSTER)
    seen, token = [], None
    while True:
        status, _, page = api.call("GET", path + "?pageSize=2" + (f"&pageToken={token}" if token else ""))
        check("GET", COLLECTION, status, page)
        seen += [c["privateLinkConnectionId"] for c in page["privateLinkConnections"]]
        assert page["totalSize"] == 3
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(set(seen)) == 3
    assert api.call("GET", path + "?state=RUNNING")[0] == 400


def test_a_list_reads_tidb_clouds_endpoints_once_however_many_connections(api: Api, emulator: str):
    for _ in range(3):
        create(api, endpoint_service(emulator)[1]["ServiceName"])
    path = COLLECTION.format(clusterId=CLUSTER)
    api.call("GET", path)  # each connection gets its endpoint

    def reads() -> int:
        return emulator_fixtures.control.route(emulator, "/_emulator/throttling", "GET")[1]["calls"].get("ec2:DescribeVpcEndpoints", 0)

    before = reads()
    status, _, page = api.call("GET", path)
    assert status == 200 and len([c for c in page["privateLinkConnections"] if c["awsEndpointService"]["endpointId"]]) == 3
    assert reads() - before == 1, "one read of the endpoints for the page, not one a connection"



def test_an_answer_never_waits_on_another_clients_aws_call(api: Api, emulator: str):
    """TiDB Cloud's answers do not wait on AWS: while one client's read is held up in AWS (its
    DescribeVpcEndpoints hangs), other clients are answered, and the held read ends right."""
    _, service = endpoint_service(emulator)
    plc = create(api, service["ServiceName"])["privateLinkConnectionId"]
    assert get(api, plc)[1]["state"] == "PENDING_ACCEPTANCE"
    emulator_fixtures.control.faults(emulator, [{"action": "ec2:DescribeVpcEndpoints", "fault": "hang", "hold": 8}])
    held: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: held.update(answer=get(api, plc)))
    try:
        reader.start()
        def fired() -> int:
            return emulator_fixtures.control.route(emulator, "/_emulator/faults")[1]["faults"][0]["fired"]

        deadline = time.time() + 5
        while time.time() < deadline and not fired():
            time.sleep(0.05)  # polling for the read to reach AWS, not waiting out a race
        assert fired(), "the read reached AWS"
        other = create(Api(api.base), endpoint_service(emulator)[1]["ServiceName"])
        zones = Api(api.base).call("GET", ZONES.format(clusterId=CLUSTER))
        assert reader.is_alive(), "answered while the other read was still held in AWS"
        assert other["state"] == "CREATING" and zones[0] == 200
    finally:
        reader.join(timeout=60)
        emulator_fixtures.control.faults(emulator, [])
    assert held["answer"][0] == 200 and held["answer"][1]["state"] == "PENDING_ACCEPTANCE", held

# -- faults ---------------------------------------------------------------------------------------

def test_faults_fail_throttle_and_hold(api: Api, double_url: str, emulator: str):
    _, service = endpoint_service(emulator)
    http("POST", double_url + "/_double/faults", {"fail_next_create": "capacity exhausted in use1-az1"})
    plc = create(api, service["ServiceName"])["privateLinkConnectionId"]
    failed = get(api, plc)[1]
    assert (failed["state"], failed["message"]) == ("FAILED", "capacity exhausted in use1-az1")

    http("POST", double_url + "/_double/faults", {"throttle": 2, "retry_after": 3})
    path = ZONES.format(clusterId=CLUSTER)
    for _ in range(2):
        status, headers, body = api.call("GET", path)
        assert status == 429 and check("GET", ZONES, status, body)["code"] == 49900007
        assert (headers["Retry-After"], headers["X-Ratelimit-Remaining-Minute"], headers["X-Ratelimit-Reset"]) == ("3", "0", "3")
    assert api.call("GET", path)[0] == 200

    http("POST", double_url + "/_double/faults", {"unavailable": 1})
    assert api.call("GET", path)[0] == 503
    assert api.call("GET", path)[0] == 200

    http("POST", double_url + "/_double/faults", {"creating_reads": 2})
    _, other = endpoint_service(emulator)
    plc = create(api, other["ServiceName"])["privateLinkConnectionId"]
    assert [get(api, plc)[1]["state"] for _ in range(3)] == ["CREATING", "CREATING", "PENDING_ACCEPTANCE"]
    assert http("POST", double_url + "/_double/faults", {"explode": 1})[0] == 400


def test_lost_answers_on_create_and_delete_leave_the_change_made(api: Api, double_url: str, emulator: str):
    _, service = endpoint_service(emulator)
    listing = COLLECTION.format(clusterId=CLUSTER)
    http("POST", double_url + "/_double/faults", {"drop_create": 1})
    with pytest.raises(http_client.RemoteDisconnected):
        api.call("POST", listing, create_body(service["ServiceName"]))
    [made] = api.call("GET", listing)[2]["privateLinkConnections"]
    assert made["awsEndpointService"]["name"] == service["ServiceName"]
    # The caller's retry meets the connection its lost call made.
    assert api.call("POST", listing, create_body(service["ServiceName"]))[0] == 409

    http("POST", double_url + "/_double/faults", {"drop_delete": 1, "deleting_reads": 1})
    item = ITEM.format(clusterId=CLUSTER, privateLinkConnectionId=made["privateLinkConnectionId"])
    with pytest.raises(http_client.RemoteDisconnected):
        api.call("DELETE", item)
    assert get(api, made["privateLinkConnectionId"])[1]["state"] == "DELETING"
    assert http("GET", double_url + "/_double/state")[2]["faults"]["drop_delete"] == 0


@pytest.mark.parametrize("faults", [{"drop_create": "1"}, {"drop_delete": -1}, {"fail_next_create": 1}])
def test_a_fault_of_the_wrong_type_is_refused_by_name(double_url: str, faults: dict[str, Any]):
    status, _, body = http("POST", double_url + "/_double/faults", faults)
    assert status == 400 and list(faults)[0] in body["message"], body


def test_creating_seconds_hold_a_new_connection_in_creating(emulator: str):
    process, url = start_double(emulator, "--account-id", TIDB_ACCOUNT, "--cluster", CLUSTER, "--public-key", PUBLIC,
                                "--private-key", PRIVATE, "--creating-seconds", "1.5")
    try:
        api = Api(url)
        _, service = endpoint_service(emulator)
        created = time.monotonic()
        plc = create(api, service["ServiceName"])["privateLinkConnectionId"]
        states = [get(api, plc)[1]["state"]]
        while states[-1] == "CREATING" and time.monotonic() - created < 10:
            states.append(get(api, plc)[1]["state"])
        assert states[0] == "CREATING" and states[-1] == "PENDING_ACCEPTANCE", states
        assert time.monotonic() - created >= 1.5
    finally:
        http("POST", url + "/_double/reset", {})
        process.terminate()
        process.wait(timeout=10)


def test_watch_pid_ends_the_double(emulator: str):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    double, _ = start_double(emulator, "--watch-pid", str(parent.pid))
    parent.kill()
    parent.wait()
    assert double.wait(timeout=5) == 0
