"""The launcher: ready line, loopback only, --watch-pid, --config and MOTO_PORT."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config
from conftest import LAUNCH, REGION, start_emulator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_exit(process: subprocess.Popen, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode
        time.sleep(0.1)
    return None


def test_explicit_ports_and_moto_api(emulator):
    port, dns_port = free_port(), free_port()
    process, ready = start_emulator(port=port, dns_port=dns_port)
    try:
        assert (ready["port"], ready["dns_port"]) == (port, dns_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=5) as response:
            assert response.status == 200
    finally:
        process.terminate()
        assert wait_exit(process, 5) is not None


def test_only_loopback_hosts():
    result = subprocess.run(
        [sys.executable, LAUNCH, "--port", "0", "--dns-port", "0", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "loopback" in result.stderr


def test_exits_when_watched_process_is_gone():
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    process, _ready = start_emulator("--watch-pid", str(watched.pid))
    try:
        assert process.poll() is None
        watched.kill()
        watched.wait()
        assert wait_exit(process, 5) == 0
    finally:
        watched.kill()
        if process.poll() is None:
            process.kill()


def test_config_flag_and_step_functions_call_back_into_this_server():
    config = json.dumps({"stepfunctions": {"execute_state_machine": True}})
    process, ready = start_emulator("--config", config)
    try:
        url = f"http://127.0.0.1:{ready['port']}"
        kwargs = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
        ec2, sfn = boto3.client("ec2", **kwargs), boto3.client("stepfunctions", **kwargs)
        vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
        definition = {
            "StartAt": "Describe",
            "States": {"Describe": {
                "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ec2:describeVpcs",
                "Parameters": {"VpcIds": [vpc]}, "End": True,
            }},
        }
        machine = sfn.create_state_machine(
            name="probe", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, name="one")["executionArn"]
        for _ in range(100):
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.1)
        assert described["status"] == "SUCCEEDED", described
        assert vpc in described["output"]  # the interpreter reached this server (MOTO_PORT)
    finally:
        process.terminate()
        wait_exit(process, 5)
