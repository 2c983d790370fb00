"""The cold-start comparison of scripts/bench: the Python Lambda a user would write for the same
step (AWS's own sample for this job is Python), with the boto3 clients inspect-database builds,
serving the Lambda Runtime API by hand as the Python runtime does, and making the same first call."""

import json
import os
import urllib.request

import boto3

rds = boto3.client("rds")
ec2 = boto3.client("ec2")
API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"

while True:
    with urllib.request.urlopen(f"{API}/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    try:
        rds.describe_db_instances(DBInstanceIdentifier=event["db_instance_identifier"])
        body, path = {"found": True}, "response"
    except Exception as error:  # the first call's answer, whatever it is
        body, path = {"errorType": type(error).__name__, "errorMessage": str(error)}, "error"
    urllib.request.urlopen(urllib.request.Request(f"{API}/{request_id}/{path}", data=json.dumps(body).encode(),
                                                  method="POST"))
