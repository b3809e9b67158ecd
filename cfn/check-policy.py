#!/usr/bin/env python3
"""Policy checks cfn-lint does not make, over CloudFormation YAML templates.

Fails (exit 1), naming the file and resource, when
  * an IAM policy statement (AWS::IAM::Role Policies, AWS::IAM::Policy, AWS::IAM::ManagedPolicy)
    allows an ssm: or kms: action (or a wildcard action covering them) on Resource "*"
    (alone or in a list), or
  * a custom resource (Type Custom::*, or AWS::CloudFormation::CustomResource) has no
    ServiceTimeout property, or one that is not a number of seconds in 1..=3600.

Usage: check-policy.py [TEMPLATE ...]   (default: every *.yaml next to this script)
       check-policy.py --self-test

Needs PyYAML (the project venv has it through cfn-lint).
"""

import sys
from pathlib import Path

import yaml

GUARDED_PREFIXES = ("ssm:", "kms:")


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form intrinsic tags."""


def _construct_node(loader, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _intrinsic(loader, tag_suffix, node):
    value = _construct_node(loader, node)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(text):
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader


def _alternatives(value):
    """Every concrete value a node may take: both branches of Fn::If, flattened lists."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            for branch in args[1:]:
                yield from _alternatives(branch)
        return
    if isinstance(value, list):
        for item in value:
            yield from _alternatives(item)
        return
    yield value


def _is_novalue(value):
    return value == {"Ref": "AWS::NoValue"}


def _guarded_actions(statement):
    actions = [a for a in _alternatives(statement.get("Action", [])) if isinstance(a, str)]
    hits = []
    for action in actions:
        lowered = action.lower()
        if lowered == "*" or lowered.startswith(GUARDED_PREFIXES) or lowered in ("ssm*", "kms*"):
            hits.append(action)
    return hits


def _statements(document):
    if not isinstance(document, dict):
        return
    for statement in _alternatives(document.get("Statement", [])):
        if isinstance(statement, dict) and not _is_novalue(statement):
            yield statement


def _policy_documents(resource):
    """(label, PolicyDocument) pairs of an IAM resource."""
    rtype = resource.get("Type")
    props = resource.get("Properties") or {}
    if rtype == "AWS::IAM::Role":
        for policy in _alternatives(props.get("Policies", [])):
            if isinstance(policy, dict) and not _is_novalue(policy):
                name = policy.get("PolicyName", "?")
                yield f"policy {name!r}", policy.get("PolicyDocument")
    elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        yield "PolicyDocument", props.get("PolicyDocument")


def _check_service_timeout(props):
    """None when fine, else what is wrong."""
    if "ServiceTimeout" not in props:
        return "has no ServiceTimeout property (CloudFormation would wait up to 3600 s for a lost response)"
    value = props["ServiceTimeout"]
    if isinstance(value, dict):
        return None  # an intrinsic (Ref to a parameter, ...): CloudFormation validates it
    try:
        seconds = int(str(value))
    except ValueError:
        return f"ServiceTimeout {value!r} is not a number of seconds"
    if not 1 <= seconds <= 3600:
        return f"ServiceTimeout {seconds} is outside 1..3600"
    return None


def check_template(template, filename):
    """List of problems ("file: resource: message")."""
    problems = []
    if not isinstance(template, dict):
        return [f"{filename}: not a template (top level is not a mapping)"]
    resources = template.get("Resources") or {}
    if not isinstance(resources, dict):
        return [f"{filename}: Resources is not a mapping"]
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        rtype = str(resource.get("Type", ""))
        where = f"{filename}: {logical_id} ({rtype})"

        for label, document in _policy_documents(resource):
            for index, statement in enumerate(_statements(document)):
                if str(statement.get("Effect", "Allow")) != "Allow":
                    continue
                actions = _guarded_actions(statement)
                if not actions:
                    continue
                resources_ = list(_alternatives(statement.get("Resource", [])))
                if "*" in resources_:
                    sid = statement.get("Sid")
                    ident = f"Sid {sid!r}" if sid else f"statement #{index}"
                    problems.append(
                        f"{where}: {label} {ident} allows {', '.join(actions)} on Resource \"*\""
                    )

        if rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
            props = resource.get("Properties") or {}
            message = _check_service_timeout(props if isinstance(props, dict) else {})
            if message:
                problems.append(f"{where}: {message}")
    return problems


def check_files(paths):
    problems = []
    for path in paths:
        try:
            template = load_template(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            problems.append(f"{path}: cannot read template: {error}")
            continue
        problems.extend(check_template(template, str(path)))
    return problems


SELF_TEST_BAD_POLICY = """
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
      Policies:
        - PolicyName: fine
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: ssm:GetParameter
                Resource: !Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/x/*
        - PolicyName: too-wide
          PolicyDocument:
            Statement:
              - Sid: Wide
                Effect: Allow
                Action: [logs:PutLogEvents, KMS:Decrypt]
                Resource: [!GetAtt Key.Arn, "*"]
  Policy:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: p
      Roles: [!Ref Role]
      PolicyDocument:
        Statement:
          Effect: Allow
          Action: ssm:PutParameter
          Resource: !If [Cond, "*", !Ref AWS::NoValue]
"""

SELF_TEST_BAD_CUSTOM = """
Conditions:
  Always: !Equals [a, a]
Resources:
  Secret:
    Type: Custom::AdminSecret
    Properties:
      ServiceToken: !ImportValue support-AdminSecretServiceToken
      ParameterName: !Join ["/", ["", !Select [0, !Split [",", "a,b"]]]]
      KeyId: !GetAtt Key.Arn
  Priority:
    Type: Custom::ListenerRulePriority
    Properties:
      ServiceToken: !Base64 x
      ServiceTimeout: 7200
      ListenerArn: !FindInMap [M, !Ref AWS::Region, !Condition Always]
  Fine:
    Type: Custom::ServiceDatabase
    Properties:
      ServiceToken: !GetAZs ""
      ServiceTimeout: 300
"""


def self_test():
    policy_problems = check_template(load_template(SELF_TEST_BAD_POLICY), "<bad-policy>")
    custom_problems = check_template(load_template(SELF_TEST_BAD_CUSTOM), "<bad-custom>")
    checks = [
        ("wide kms statement in a role's inline policy is caught",
         any("Role" in p and "'too-wide'" in p and "KMS:Decrypt" in p for p in policy_problems)),
        ("the scoped ssm statement is not reported",
         not any("'fine'" in p for p in policy_problems)),
        ("ssm on \"*\" inside Fn::If of an AWS::IAM::Policy is caught",
         any(p.startswith("<bad-policy>: Policy ") and "ssm:PutParameter" in p for p in policy_problems)),
        ("custom resource without ServiceTimeout is caught",
         any("Secret (Custom::AdminSecret)" in p and "no ServiceTimeout" in p for p in custom_problems)),
        ("ServiceTimeout above 3600 is caught",
         any("Priority (Custom::ListenerRulePriority)" in p and "7200" in p for p in custom_problems)),
        ("custom resource with ServiceTimeout 300 is not reported",
         not any("Fine" in p for p in custom_problems)),
    ]
    failed = False
    for name, ok in checks:
        print(f"self-test: {'ok  ' if ok else 'FAIL'} {name}")
        failed |= not ok
    if failed:
        print("self-test: problems reported were:", *policy_problems, *custom_problems, sep="\n  ")
        return 1
    print("self-test: passed")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if any(arg.startswith("-") for arg in argv[1:]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    paths = argv[1:] or sorted(str(p) for p in Path(__file__).resolve().parent.glob("*.yaml"))
    if not paths:
        print("check-policy: no templates given or found", file=sys.stderr)
        return 2
    problems = check_files(paths)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check-policy: {len(problems)} problem(s) in {len(paths)} template(s)")
        return 1
    print(f"check-policy: {len(paths)} template(s) OK: {' '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
