"""Each check in check_definitions.py, and statemachines.py --check, catches a broken copy of the
real project.

Every test copies template.yaml, statemachine/ and the crates' Cargo.toml files into a temporary
directory, breaks one thing, and expects exactly the check that guards it to fail. The unbroken
copy must pass, so a check that reports nothing cannot hide behind these tests.

When the project itself fails a check, the first test says so and the others cannot tell
anything: fix the project first (scripts/check-static runs these with -x).

Run: .venv-tools/bin/python -m pytest scripts/test_check_definitions.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_definitions as cd  # noqa: E402
import check_linked  # noqa: E402
import statemachines  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "template.yaml", tmp_path / "template.yaml")
    shutil.copytree(REPO / "statemachine", tmp_path / "statemachine")
    (tmp_path / "functions" / "src").mkdir(parents=True)
    for part in ("Cargo.toml", "src/main.rs"):
        shutil.copy(REPO / "functions" / part, tmp_path / "functions" / part)
    return tmp_path


def problems(root: Path) -> dict[str, list[str]]:
    return {r.title: r.problems for r in cd.run(root, root / "template.yaml") if r.problems}


def edit_template(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrites the copy in long form (JSON is YAML), which the loader must read as well."""
    template = cd.load_template(root / "template.yaml")
    change(template)
    (root / "template.yaml").write_text(json.dumps(template, indent=1), encoding="utf-8")


def edit_definition(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "statemachine" / "provision.asl.json"
    definition = json.loads(path.read_text(encoding="utf-8"))
    change(definition)
    path.write_text(json.dumps(definition, indent=2), encoding="utf-8")


def only_failure(root: Path, check: Callable[..., cd.Result], expected: str) -> None:
    found = problems(root)
    title = check(root, cd.load_template(root / "template.yaml")).title
    assert list(found) == [title], found
    assert any(expected in p for p in found[title]), found[title]


def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def first_task(definition: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in definition["States"].values() if s["Type"] == "Task")


def first_statement(template: dict[str, Any], function: str) -> dict[str, Any]:
    policies = resources(template)[function]["Properties"]["Policies"]
    return next(p for p in policies if "Statement" in p)["Statement"][0]


# --- The real project passes, and the loader reads short-form intrinsics -------------------------


def test_the_project_as_it_is_passes(project: Path) -> None:
    assert problems(project) == {}


def test_loader_reads_short_form_intrinsics(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "Resources:\n"
        "  A:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      Arn: !GetAtt Fn.Arn\n"
        "      List: !GetAtt [Fn, Arn]\n"
        "      Name: !Ref Fn\n"
        "      Joined: !Join [',', !Ref Ids]\n"
        "      Text: !Sub 'arn:${AWS::Partition}:x'\n"
        "      Level: !FindInMap [M, !Ref L, K]\n",
        encoding="utf-8",
    )
    props = cd.load_template(tmp_path / "t.yaml")["Resources"]["A"]["Properties"]
    assert props["Arn"] == {"Fn::GetAtt": ["Fn", "Arn"]}
    assert props["List"] == {"Fn::GetAtt": ["Fn", "Arn"]}
    assert props["Name"] == {"Ref": "Fn"}
    assert props["Joined"] == {"Fn::Join": [",", {"Ref": "Ids"}]}
    assert props["Text"] == {"Fn::Sub": "arn:${AWS::Partition}:x"}
    assert props["Level"] == {"Fn::FindInMap": ["M", {"Ref": "L"}, "K"]}


# --- 1. placeholders and substitutions ------------------------------------------------------------


def test_placeholder_without_substitution(project: Path) -> None:
    edit_definition(project, lambda d: d["States"]["ReadRequest"].update(Comment="uses ${NotSubstituted}"))
    only_failure(project, cd.check_substitutions, "${NotSubstituted}")


def test_unused_substitution(project: Path) -> None:
    edit_template(
        project,
        lambda t: resources(t)["ProvisionStateMachine"]["Properties"]["DefinitionSubstitutions"].update(
            SpareFunctionArn={"Fn::GetAtt": ["PlanZonesFunction", "Arn"]}
        ),
    )
    only_failure(project, cd.check_substitutions, "SpareFunctionArn is not used")


def test_missing_definition_file(project: Path) -> None:
    (project / "statemachine" / "provision.asl.json").unlink()
    found = problems(project)
    assert any("does not exist" in p for ps in found.values() for p in ps), found


# --- 2. Task placeholders point at functions ------------------------------------------------------


def test_task_placeholder_mapped_to_something_else(project: Path) -> None:
    edit_template(
        project,
        lambda t: resources(t)["ProvisionStateMachine"]["Properties"]["DefinitionSubstitutions"].update(
            InspectDatabaseFunctionArn={"Ref": "ConnectionTopic"}
        ),
    )
    only_failure(project, cd.check_task_functions, "not !GetAtt <Function>.Arn")


def test_task_placeholder_mapped_to_a_missing_function(project: Path) -> None:
    edit_template(
        project,
        lambda t: resources(t)["ProvisionStateMachine"]["Properties"]["DefinitionSubstitutions"].update(
            PlanZonesFunctionArn={"Fn::GetAtt": ["NoSuchFunction", "Arn"]}
        ),
    )
    only_failure(project, cd.check_task_functions, "NoSuchFunction, which is not a function")


def test_lambda_invoke_function_name_is_checked_too(project: Path) -> None:
    def to_invoke(definition: dict[str, Any]) -> None:
        task = first_task(definition)
        placeholder = task["Resource"]
        task["Resource"] = "arn:aws:states:::lambda:invoke"
        task["Parameters"] = {"FunctionName": placeholder, "Payload.$": "$"}

    edit_definition(project, to_invoke)
    assert problems(project) == {}
    edit_template(
        project,
        lambda t: resources(t)["ProvisionStateMachine"]["Properties"]["DefinitionSubstitutions"].update(
            InspectDatabaseFunctionArn={"Fn::GetAtt": ["InspectDatabaseFunction", "FunctionName"]}
        ),
    )
    only_failure(project, cd.check_task_functions, "not !GetAtt <Function>.Arn")


# --- 3. no orphan definitions ---------------------------------------------------------------------


def test_definition_without_state_machine(project: Path) -> None:
    shutil.copy(project / "statemachine" / "provision.asl.json", project / "statemachine" / "forgotten.asl.json")
    only_failure(project, cd.check_orphan_definitions, "forgotten.asl.json")


# --- 4. One binary, each Handler a step it serves --------------------------------------------------


def test_a_function_built_from_another_binary(project: Path) -> None:
    edit_template(
        project,
        lambda t: resources(t)["PlanZonesFunction"]["Metadata"]["BuildProperties"].update(Binary="plan-zones"),
    )
    only_failure(project, cd.check_binaries, "PlanZonesFunction: Metadata.BuildProperties.Binary is 'plan-zones'")


def test_a_handler_the_binary_does_not_serve(project: Path) -> None:
    edit_template(project, lambda t: resources(t)["PlanZonesFunction"]["Properties"].update(Handler="plan-zone"))
    found = problems(project)
    assert list(found) == [cd.check_binaries(project, cd.load_template(project / "template.yaml")).title], found
    # Both ends: the misspelt Handler, and the step no function runs any more.
    assert any("'plan-zone' is not a step" in p for p in next(iter(found.values()))), found
    assert any("serves 'plan-zones', the Handler of no function" in p for p in next(iter(found.values()))), found


def test_two_functions_with_one_handler(project: Path) -> None:
    edit_template(project, lambda t: resources(t)["TargetGroupFunction"]["Properties"].update(Handler="plan-zones"))
    only_failure(project, cd.check_binaries, "Handler plan-zones is also")


def test_a_step_table_arm_removed(project: Path) -> None:
    main = project / "functions" / "src" / "main.rs"
    main.write_text("\n".join(l for l in main.read_text().splitlines() if '"notify" =>' not in l))
    only_failure(project, cd.check_binaries, "NotifyFunction: Handler 'notify' is not a step")


def test_function_without_cargo_lambda_build(project: Path) -> None:
    edit_template(project, lambda t: resources(t)["LoadBalancerFunction"].pop("Metadata"))
    only_failure(project, cd.check_binaries, "BuildMethod is not rust-cargolambda")


# --- 5. policies ----------------------------------------------------------------------------------


def test_function_without_own_statements(project: Path) -> None:
    edit_template(
        project,
        lambda t: resources(t)["SecurityGroupsFunction"]["Properties"].update(Policies=["AWSLambdaBasicExecutionRole"]),
    )
    only_failure(project, cd.check_policies, "SecurityGroupsFunction: has no inline policy statements")


def test_function_with_shared_role(project: Path) -> None:
    edit_template(project, lambda t: resources(t)["PlanZonesFunction"]["Properties"].update(Role="arn:aws:iam::1:role/x"))
    only_failure(project, cd.check_policies, "shared Role")


@pytest.mark.parametrize("action", ["*", "ec2:*", ["elasticloadbalancing:DescribeTags", "elasticloadbalancing:*"]])
def test_wildcard_actions(project: Path, action: Any) -> None:
    edit_template(project, lambda t: first_statement(t, "TargetGroupFunction").update(Action=action))
    only_failure(project, cd.check_policies, "grants a whole service")


def test_pass_role_on_everything(project: Path) -> None:
    def grant(template: dict[str, Any]) -> None:
        policies = resources(template)["EndpointServiceFunction"]["Properties"]["Policies"]
        policies.append({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]})

    edit_template(project, grant)
    only_failure(project, cd.check_policies, "iam:PassRole on Resource '*'")


def test_wildcard_outside_functions_is_caught(project: Path) -> None:
    def grant(template: dict[str, Any]) -> None:
        statements = resources(template)["ConnectionTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
        statements[0]["Action"] = "kms:*"

    edit_template(project, grant)
    only_failure(project, cd.check_policies, "ConnectionTopicKey")


def test_deny_with_wildcard_is_allowed(project: Path) -> None:
    def deny(template: dict[str, Any]) -> None:
        policies = resources(template)["PlanZonesFunction"]["Properties"]["Policies"]
        policies.append({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})

    edit_template(project, deny)
    assert problems(project) == {}


# --- the command line -----------------------------------------------------------------------------


def test_main_exit_status(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cd.main(["--root", str(project)]) == 0
    shutil.copy(project / "statemachine" / "provision.asl.json", project / "statemachine" / "extra.asl.json")
    assert cd.main(["--root", str(project)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_tidb_cloud_function_with_the_default_timeout_is_caught(project: Path) -> None:
    edit_template(project, lambda t: t["Resources"]["ConnectTiDBCloudFunction"]["Properties"].pop("Timeout"))
    found = problems(project)
    assert list(found) == ["functions that call TiDB Cloud outlast one TiDB Cloud call's worst case"], found
    assert "ConnectTiDBCloudFunction" in found[next(iter(found))][0]


def test_the_tidb_cloud_secret_in_globals_is_caught(project: Path) -> None:
    def to_globals(t: dict[str, Any]) -> None:
        t["Globals"]["Function"]["Environment"]["Variables"][cd.SECRET_VARIABLE] = {"Ref": "TiDBCloudApiKeySecretArn"}

    edit_template(project, to_globals)
    only_failure(project, cd.check_secret_environment, "Globals.Function")


def test_the_tidb_cloud_secret_given_to_a_function_that_may_not_read_it_is_caught(project: Path) -> None:
    def to_target_group(t: dict[str, Any]) -> None:
        t["Resources"]["TargetGroupFunction"]["Properties"]["Environment"] = {
            "Variables": {cd.SECRET_VARIABLE: {"Ref": "TiDBCloudApiKeySecretArn"}}}

    edit_template(project, to_target_group)
    only_failure(project, cd.check_secret_environment, "TargetGroupFunction: has")


def test_a_function_that_may_read_the_secret_without_its_arn_is_caught(project: Path) -> None:
    edit_template(project, lambda t: t["Resources"]["PlanZonesFunction"]["Properties"]["Environment"]["Variables"]
                  .pop(cd.SECRET_VARIABLE))
    only_failure(project, cd.check_secret_environment, "PlanZonesFunction: may read")


# --- statemachines.py --check ----------------------------------------------------------------------


def test_the_definitions_are_what_statemachines_py_writes(project: Path) -> None:
    assert statemachines.main(["--check", "--root", str(project)]) == 0


def test_a_definition_edited_by_hand_is_caught(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "statemachine" / "provision.asl.json"
    definition = json.loads(path.read_text())
    definition["States"]["InspectDatabase"]["Retry"][0]["MaxAttempts"] = 3
    path.write_text(json.dumps(definition, indent=2) + "\n")

    assert statemachines.main(["--check", "--root", str(project)]) == 1
    assert "statemachine/provision.asl.json is not what scripts/statemachines.py writes" in capsys.readouterr().err
    assert statemachines.main(["--root", str(project)]) == 0
    assert statemachines.main(["--check", "--root", str(project)]) == 0


# check_linked.py reads the real workspace's dependency tree (cargo tree), not a copy; that the
# deployed build passes is scripts/check-static's own run of it.


def test_a_build_with_the_local_stacks_name_server_client_is_caught() -> None:
    found = check_linked.forbidden(check_linked.linked(REPO, ["tidb-privatelink/name-server"]))
    assert [f.split(":")[0].split("@")[0] for f in found] == ["hickory-resolver"], found


def test_forbidden_crates_match_by_name_and_version_prefix() -> None:
    found = check_linked.forbidden({"hyper@0.14.32", "hyper@1.8.1", "rustls@0.23.46", "rustls@0.21.12",
                                    "aws-lc-sys@0.39.0", "ring@0.17.14"})
    assert [f.split(":")[0] for f in found] == ["aws-lc-sys@0.39.0", "hyper@0.14.32", "rustls@0.21.12"]
