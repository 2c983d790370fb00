"""SAM -> CloudFormation, the way `sam deploy` does it: AWS's own translator (samtranslator, the
version pinned by aws-sam-cli in scripts/requirements-tools.txt) expands Globals, policy templates
(`LambdaInvokePolicy`, ...), event sources (`EventBridgeRule`, `SNS`, `Schedule`, ...) and the
implicit roles. Runs under .venv-tools/bin/python, which has samtranslator; the rest of the local
stack runs under .venv (moto, boto3) and reads this script's JSON output.

    .venv-tools/bin/python scripts/local_stack/transform.py TEMPLATE REGION ACCOUNT STACK PARAMS_JSON

Local artifacts are not uploaded anywhere: a function's local CodeUri becomes a placeholder S3
location (its code is served by `cargo lambda watch`), and a state machine's local DefinitionUri is
read and inlined as Definition (SAM then emits DefinitionString + DefinitionSubstitutions, exactly
what CloudFormation receives after `sam package`).

Output (stdout): {"template": <CloudFormation template>, "functions": {LogicalId: {"binary": ...,
"build_method": ...}}}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_BUCKET = "local-stack-artifacts"


class StaticManagedPolicies:
    """The translator asks IAM for the ARNs of managed policies named in `Policies:`; offline we
    answer from the map bundled with samtranslator (the same names AWS has)."""

    def __init__(self) -> None:
        import samtranslator

        data = Path(samtranslator.__file__).parent / "internal" / "data" / "aws_managed_policies.json"
        self._policies: dict[str, str] = {}
        if data.exists():
            self._policies = json.loads(data.read_text()).get("aws", {})

    def load(self) -> dict[str, str]:
        return self._policies


def _is_local(uri: Any) -> bool:
    return isinstance(uri, str) and not uri.startswith("s3://")


def _inline_artifacts(template: dict[str, Any], base: Path) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = {}
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    if _is_local(globals_function.get("CodeUri")):
        globals_function["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/Globals.zip"
    for logical_id, resource in (template.get("Resources") or {}).items():
        kind = resource.get("Type")
        props = resource.setdefault("Properties", {}) or {}
        if kind == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image" or "ImageUri" in props:
                raise SystemExit(f"{logical_id}: container image functions cannot run locally")
            metadata = resource.get("Metadata") or {}
            functions[logical_id] = {
                "binary": (metadata.get("BuildProperties") or {}).get("Binary"),
                "build_method": metadata.get("BuildMethod"),
            }
            if _is_local(props.get("CodeUri")):
                props["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::StateMachine":
            uri = props.get("DefinitionUri")
            if _is_local(uri):
                path = base / uri
                text = path.read_text()
                props["Definition"] = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
                del props["DefinitionUri"]
            elif uri is not None:
                raise SystemExit(f"{logical_id}: DefinitionUri {uri!r} is not a local file")
    return functions


def main(argv: list[str]) -> None:
    template_path, region, account, stack, params_json = argv
    # The translator's ARN generator reads the region from the environment (boto's session).
    os.environ["AWS_DEFAULT_REGION"] = region
    path = Path(template_path).resolve()
    template = yaml_parse(path.read_text())
    functions = _inline_artifacts(template, path.parent)
    parameters = json.loads(params_json)
    parameters.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": stack,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
    )
    try:
        output = transform(template, parameters, StaticManagedPolicies())
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause) for cause in error.causes)
        raise SystemExit(f"{path}: SAM transform failed: {causes}") from None
    json.dump({"template": output, "functions": functions}, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
