#!/usr/bin/env python3
"""Cross-checks that neither `sam validate --lint` nor asl-validator makes: the wiring between
template.yaml, the state machine definitions under statemachine/, and the Rust crate
functions/, plus the IAM red lines.

1. Every `${...}` placeholder in a state machine's definition file (its DefinitionUri) is a key of
   its DefinitionSubstitutions, and every substitution is used.
2. Every Task's Lambda placeholder (`Resource`, or `Parameters.FunctionName` of lambda:invoke)
   maps to `!GetAtt <Function>.Arn` of a function in the template.
3. Every statemachine/*.asl.json is the DefinitionUri of some state machine.
4. Every function is the one binary of the crate `functions/`, built by cargo lambda, and its
   Handler is a step that binary's table (functions/src/main.rs) serves; every step is some
   function's.
5. Every function has a role of its own with inline policy statements, and no Allow statement
   anywhere grants "*", "<service>:*", NotAction, or iam:PassRole on "*".

Usage: check_definitions.py [--root DIR] [--template FILE]. Exit status 1 when a check fails.
Tests (each check catches a broken copy): scripts/test_check_definitions.py.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
FUNCTION_TYPES = {SERVERLESS_FUNCTION, "AWS::Lambda::Function"}
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
LAMBDA_INVOKE = re.compile(r"^arn:[^:]+:states:::lambda:invoke(\.waitForTaskToken)?$")
# Service integrations other than Lambda (the partition may be a placeholder).
SERVICE_INTEGRATION = re.compile(r"^arn:[^:]+:states:::")


# --- Loading ------------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short-form intrinsics (`!Ref X`) into their long
    form (`{"Ref": "X"}`), so the rest of the script sees one shape."""


def _intrinsic(name: str) -> Callable[[CfnLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _tag in ("Ref", "Condition"):
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic(_tag))
for _tag in (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "GetAtt", "If", "ImportValue",
    "Join", "Not", "Or", "Select", "Split", "Sub", "Transform", "Length", "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic(f"Fn::{_tag}"))


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        template = yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return template


def resources_of(template: dict[str, Any], *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") in types:
            yield name, resource


# --- Checks -------------------------------------------------------------------------------------


@dataclass
class Result:
    title: str
    problems: list[str] = field(default_factory=list)
    checked: int = 0


def _local_definition(root: Path, machine: dict[str, Any]) -> Path | None:
    uri = machine.get("Properties", {}).get("DefinitionUri")
    return root / uri if isinstance(uri, str) and not uri.startswith("s3://") else None


def _read_definition(path: Path) -> tuple[str, Any]:
    text = path.read_text(encoding="utf-8")
    return text, json.loads(text)


def check_substitutions(root: Path, template: dict[str, Any]) -> Result:
    result = Result("state machine placeholders match DefinitionSubstitutions")
    for name, machine in resources_of(template, SERVERLESS_STATE_MACHINE):
        path = _local_definition(root, machine)
        if path is None:
            continue
        result.checked += 1
        if not path.is_file():
            result.problems.append(f"{name}: DefinitionUri {path.relative_to(root)} does not exist")
            continue
        try:
            text, _ = _read_definition(path)
        except json.JSONDecodeError as e:
            result.problems.append(f"{name}: {path.relative_to(root)} is not JSON: {e}")
            continue
        used = set(PLACEHOLDER.findall(text))
        given = machine["Properties"].get("DefinitionSubstitutions") or {}
        if not isinstance(given, dict):
            result.problems.append(f"{name}: DefinitionSubstitutions is not a mapping")
            continue
        for missing in sorted(used - set(given)):
            result.problems.append(f"{name}: ${{{missing}}} in {path.name} has no DefinitionSubstitutions entry")
        for unused in sorted(set(given) - used):
            result.problems.append(f"{name}: DefinitionSubstitutions.{unused} is not used in {path.name}")
    return result


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside Parallel branches and Map processors."""
    for state_name, state in (definition.get("States") or {}).items():
        if not isinstance(state, dict):
            continue
        yield state_name, state
        for branch in state.get("Branches") or []:
            yield from _states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from _states(state[key])


def _lambda_placeholders(state: dict[str, Any]) -> Iterator[str]:
    resource = state.get("Resource")
    if not isinstance(resource, str):
        return
    if LAMBDA_INVOKE.match(resource):
        function = (state.get("Parameters") or state.get("Arguments") or {}).get("FunctionName")
        if isinstance(function, str):
            yield from PLACEHOLDER.findall(function)
    elif not SERVICE_INTEGRATION.match(resource):
        yield from PLACEHOLDER.findall(resource)


def check_task_functions(root: Path, template: dict[str, Any]) -> Result:
    result = Result("Task placeholders are !GetAtt <Function>.Arn of template functions")
    functions = {name for name, _ in resources_of(template, *FUNCTION_TYPES)}
    for name, machine in resources_of(template, SERVERLESS_STATE_MACHINE):
        path = _local_definition(root, machine)
        if path is None or not path.is_file():
            continue  # reported by check_substitutions
        try:
            _, definition = _read_definition(path)
        except json.JSONDecodeError:
            continue  # reported by check_substitutions
        substitutions = machine["Properties"].get("DefinitionSubstitutions") or {}
        for state_name, state in _states(definition):
            if state.get("Type") != "Task":
                continue
            for key in _lambda_placeholders(state):
                result.checked += 1
                where = f"{name}: Task {state_name} (${{{key}}})"
                value = substitutions.get(key) if isinstance(substitutions, dict) else None
                get_att = value.get("Fn::GetAtt") if isinstance(value, dict) else None
                if value is None:
                    continue  # reported by check_substitutions
                if not (isinstance(get_att, list) and len(get_att) == 2 and get_att[1] == "Arn"):
                    result.problems.append(f"{where} maps to {value!r}, not !GetAtt <Function>.Arn")
                elif get_att[0] not in functions:
                    result.problems.append(f"{where} maps to {get_att[0]}, which is not a function in the template")
    return result


def check_orphan_definitions(root: Path, template: dict[str, Any]) -> Result:
    result = Result("every statemachine/*.asl.json belongs to a state machine")
    referenced = {
        path.resolve()
        for _, machine in resources_of(template, SERVERLESS_STATE_MACHINE)
        if (path := _local_definition(root, machine)) is not None
    }
    for path in sorted((root / "statemachine").glob("*.asl.json")):
        result.checked += 1
        if path.resolve() not in referenced:
            result.problems.append(f"{path.relative_to(root)} is not the DefinitionUri of any state machine")
    return result


FUNCTIONS_CRATE = "functions"
# One arm of the binary's step table (functions/src/main.rs): `"inspect-database" => ...`.
_STEP_ARM = re.compile(r'^\s*"([a-z0-9-]+)"\s*=>', re.MULTILINE)


def _functions_crate(root: Path, result: Result) -> tuple[str | None, set[str]]:
    """The binary the crate functions/ builds, and the handlers its step table serves."""
    manifest = root / FUNCTIONS_CRATE / "Cargo.toml"
    main = root / FUNCTIONS_CRATE / "src" / "main.rs"
    try:
        cargo = tomllib.loads(manifest.read_text(encoding="utf-8"))
        source = main.read_text(encoding="utf-8")
    except (OSError, tomllib.TOMLDecodeError) as e:
        result.problems.append(f"{FUNCTIONS_CRATE}/: cannot read the functions crate: {e}")
        return None, set()
    bins = [b.get("name") for b in cargo.get("bin") or []] or [(cargo.get("package") or {}).get("name")]
    if len(bins) != 1:
        result.problems.append(f"{FUNCTIONS_CRATE}/Cargo.toml builds {bins}, not one binary")
        return None, set()
    return bins[0], set(_STEP_ARM.findall(source))


def check_binaries(root: Path, template: dict[str, Any]) -> Result:
    result = Result("every function runs the one binary of functions/, its Handler a step that binary serves")
    binary, served = _functions_crate(root, result)
    handled: dict[str, str] = {}
    for name, function in resources_of(template, SERVERLESS_FUNCTION):
        result.checked += 1
        metadata = function.get("Metadata") or {}
        if metadata.get("BuildMethod") != "rust-cargolambda":
            result.problems.append(f"{name}: Metadata.BuildMethod is not rust-cargolambda")
        named = (metadata.get("BuildProperties") or {}).get("Binary")
        if binary and named != binary:
            result.problems.append(f"{name}: Metadata.BuildProperties.Binary is {named!r}, not {binary!r}")
        handler = (function.get("Properties") or {}).get("Handler")
        if handler in handled:
            result.problems.append(f"{name}: Handler {handler} is also {handled[handler]}'s")
        elif binary and handler not in served:
            result.problems.append(f"{name}: Handler {handler!r} is not a step {FUNCTIONS_CRATE}/src/main.rs serves")
        handled[handler] = name
    for unused in sorted(served - set(handled)):
        result.problems.append(f"{FUNCTIONS_CRATE}/src/main.rs serves {unused!r}, the Handler of no function")
    return result


def _statements(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement anywhere under `node` (inline policies, key and topic policies...)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement":
                items = value if isinstance(value, list) else [value]
                for i, statement in enumerate(items):
                    if isinstance(statement, dict):
                        yield f"{path}.Statement[{i}]", statement
            else:
                yield from _statements(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _statements(item, f"{path}[{i}]")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_policies(root: Path, template: dict[str, Any]) -> Result:
    result = Result("functions have their own least-privilege statements; no wildcard grants")
    for name, function in resources_of(template, SERVERLESS_FUNCTION):
        properties = function.get("Properties") or {}
        if "Role" in properties:
            result.problems.append(f"{name}: uses a shared Role instead of its own Policies")
            continue
        own = [s for _, s in _statements(properties.get("Policies"), name)]
        if not own:
            result.problems.append(f"{name}: has no inline policy statements of its own")
    for path, statement in _statements(template["Resources"], "Resources"):
        result.checked += 1
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            result.problems.append(f"{path}: Allow with NotAction")
        actions = [a for a in _as_list(statement.get("Action")) if isinstance(a, str)]
        resources = _as_list(statement.get("Resource"))
        for action in actions:
            if action == "*" or action.endswith(":*"):
                result.problems.append(f"{path}: Action {action!r} grants a whole service")
            elif fnmatch.fnmatch("iam:passrole", action.lower()) and "*" in resources:
                result.problems.append(f"{path}: {action} on Resource '*'")
    return result


# The longest one TiDB Cloud call can take (src/tidb_cloud/tests.rs,
# one_call_fits_in_the_functions_timeout: a digest challenge, 3 attempts of 10 s, 2 throttle waits of 20 s).
TIDB_CLOUD_CALL_WORST_CASE_SECONDS = 80


def _reads_tidb_cloud_key(name: str, properties: dict[str, Any]) -> bool:
    """Whether the function's role may read the TiDB Cloud key's secret, so it calls TiDB Cloud."""
    actions = {a for _, s in _statements(properties.get("Policies"), name) for a in _as_list(s.get("Action"))}
    return "secretsmanager:GetSecretValue" in actions


def check_timeouts(root: Path, template: dict[str, Any]) -> Result:
    result = Result("functions that call TiDB Cloud outlast one TiDB Cloud call's worst case")
    default = ((template.get("Globals") or {}).get("Function") or {}).get("Timeout", 3)
    for name, function in resources_of(template, SERVERLESS_FUNCTION):
        properties = function.get("Properties") or {}
        if not _reads_tidb_cloud_key(name, properties):
            continue
        result.checked += 1
        timeout = properties.get("Timeout", default)
        if not isinstance(timeout, int) or timeout <= TIDB_CLOUD_CALL_WORST_CASE_SECONDS:
            result.problems.append(f"{name}: Timeout {timeout} s, not above {TIDB_CLOUD_CALL_WORST_CASE_SECONDS} s")
    return result


SECRET_VARIABLE = "TIDB_CLOUD_API_KEY_SECRET_ARN"


def _variables(node: dict[str, Any]) -> dict[str, Any]:
    return ((node.get("Environment") or {}).get("Variables")) or {}


def check_secret_environment(root: Path, template: dict[str, Any]) -> Result:
    result = Result(f"{SECRET_VARIABLE} reaches exactly the functions whose role may read the secret")
    if SECRET_VARIABLE in _variables((template.get("Globals") or {}).get("Function") or {}):
        result.problems.append(f"Globals.Function: {SECRET_VARIABLE} would reach every function")
    for name, function in resources_of(template, SERVERLESS_FUNCTION):
        result.checked += 1
        properties = function.get("Properties") or {}
        reads = _reads_tidb_cloud_key(name, properties)
        told = SECRET_VARIABLE in _variables(properties)
        if told and not reads:
            result.problems.append(f"{name}: has {SECRET_VARIABLE} but its role may not read the secret")
        elif reads and not told:
            result.problems.append(f"{name}: may read the secret but has no {SECRET_VARIABLE}")
    return result


CHECKS: list[Callable[[Path, dict[str, Any]], Result]] = [
    check_substitutions,
    check_task_functions,
    check_orphan_definitions,
    check_binaries,
    check_policies,
    check_timeouts,
    check_secret_environment,
]


def run(root: Path, template_path: Path) -> list[Result]:
    template = load_template(template_path)
    return [check(root, template) for check in CHECKS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--template", type=Path, help="default: <root>/template.yaml")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        results = run(root, args.template or root / "template.yaml")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"FAIL  cannot read the template: {e}")
        return 1
    for result in results:
        print(f"{'ok  ' if not result.problems else 'FAIL'}  {result.title} ({result.checked} checked)")
        for problem in result.problems:
            print(f"        {problem}")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
