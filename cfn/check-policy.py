#!/usr/bin/env python3
"""Policy checks cfn-lint does not make, over CloudFormation YAML templates.

Fails (exit 1), naming the file and resource, when
  * an IAM policy statement (AWS::IAM::Role Policies, AWS::IAM::Policy, AWS::IAM::ManagedPolicy)
    allows an ssm: or kms: action (or a wildcard action covering them) on Resource "*"
    (alone or in a list), or
  * a custom resource (Type Custom::*, or AWS::CloudFormation::CustomResource) has no
    ServiceTimeout property, or one that is not a number of seconds in 1..=3600, or
  * a Lambda execution role (trusts lambda.amazonaws.com) allows an action its handler never
    calls, or is not one of the roles in ROLE_CRATES. The calls are read from the Rust source of
    the role's crate and of the workspace crates it depends on (crates/ssm-secret, ...): every
    `.snake_case()` call in a crate that depends on an SDK counts as that service's PascalCase
    action (`.put_parameter()` -> ssm:PutParameter). Actions the Lambda service or another AWS
    service uses on the function's behalf are in PLATFORM and IMPLIED; code on branches not yet
    merged in PENDING. The custom-resource handlers' roles may also allow lambda:InvokeFunction
    (Lambda invokes the on-failure destination, the dead-letter responder, with them), on a named
    function only, never on "*"; the responder's own role may not.

The one exception to the first rule: kms:ListAliases has no resource-level permissions, so a
statement that allows only kms:ListAliases may name Resource "*".

Usage: check-policy.py [TEMPLATE ...]   (default: every *.yaml next to this script)
       check-policy.py --self-test

Needs PyYAML (the project venv has it through cfn-lint).
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

GUARDED_PREFIXES = ("ssm:", "kms:")
# Actions without resource-level permissions that may be allowed on "*" despite the rule above.
STAR_ONLY_ACTIONS = {"kms:ListAliases"}

REPO = Path(__file__).resolve().parent.parent
# Lambda execution role (logical id in cfn/support.yaml) -> the crate whose binary runs with it.
ROLE_CRATES = {
    "AdminSecretRole": "admin-secret",
    "ServiceDatabaseRole": "service-database",
    "ListenerRulePriorityRole": "listener-rule-priority",
    "DeadLetterResponderRole": "dead-letter-responder",
}
# Roles whose function has an on-failure destination (cfn/support.yaml's EventInvokeConfigs):
# Lambda invokes the destination with the function's execution role, so the role needs these
# actions on the destination (never on "*").
DESTINATION_ACTIONS = {"lambda:InvokeFunction"}
DESTINATION_CRATES = {"admin-secret", "service-database", "listener-rule-priority"}
# SDK crate -> IAM service prefix of its operations.
SDK_PREFIXES = {
    "aws-sdk-ssm": "ssm",
    "aws-sdk-kms": "kms",
    "aws-sdk-elasticloadbalancingv2": "elasticloadbalancing",
    "aws-sdk-cloudformation": "cloudformation",
    "aws-sdk-secretsmanager": "secretsmanager",
}
# Called by the Lambda service for the function, not by the handler: log delivery and the
# network interfaces of a function in a VPC (AWSLambdaVPCAccessExecutionRole's actions).
PLATFORM = {
    "logs:CreateLogStream", "logs:PutLogEvents",
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}
# Actions another service performs with the caller's permissions when the handler calls the key
# action: SSM encrypts and decrypts SecureStrings with KMS, Secrets Manager decrypts a secret with
# its KMS key, and PutParameter with Tags needs ssm:AddTagsToResource.
IMPLIED = {
    "ssm:PutParameter": {"kms:Encrypt", "kms:GenerateDataKey", "ssm:AddTagsToResource"},
    "ssm:GetParameter": {"kms:Decrypt"},
    "ssm:GetParameterHistory": {"kms:Decrypt"},
    "secretsmanager:GetSecretValue": {"kms:Decrypt"},
}
# Granted for code on branches not merged yet (the handlers will call these). Emptied at merge:
# after merging, `check-policy.py` reports entries the source now calls as stale.
PENDING: dict[str, set[str]] = {}


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


def _crate_calls(crate, seen=None):
    """IAM actions the crate (with its workspace dependencies) calls through an AWS SDK."""
    seen = set() if seen is None else seen
    if crate in seen:
        return set()
    seen.add(crate)
    root = REPO / "crates" / crate
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    dependencies = set(manifest.get("dependencies", {}))
    names = set()
    for source in sorted(root.glob("src/**/*.rs")):
        names |= set(re.findall(r"\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)", source.read_text(encoding="utf-8")))
    actions = _sdk_actions(dependencies, names)
    for dependency in sorted(dependencies):
        if (REPO / "crates" / dependency / "Cargo.toml").is_file():
            actions |= _crate_calls(dependency, seen)
    return actions


def _sdk_actions(dependencies, names):
    """Every `.name()` call as an action of every SDK among the dependencies
    (`get_secret_value` with aws-sdk-secretsmanager -> secretsmanager:GetSecretValue)."""
    return {
        f"{prefix}:{''.join(part.capitalize() for part in name.split('_'))}"
        for sdk, prefix in SDK_PREFIXES.items() if sdk in dependencies
        for name in names
    }


_ALLOWED_CACHE = {}


def allowed_actions(crate):
    """(allowed actions, stale PENDING entries) of the crate's role."""
    if crate not in _ALLOWED_CACHE:
        called = _crate_calls(crate)
        implied = set().union(*(IMPLIED.get(action, set()) for action in called))
        pending = PENDING.get(crate, set())
        _ALLOWED_CACHE[crate] = (called | implied | PLATFORM | pending, pending & called)
    return _ALLOWED_CACHE[crate]


def _is_lambda_role(resource):
    if resource.get("Type") != "AWS::IAM::Role":
        return False
    document = (resource.get("Properties") or {}).get("AssumeRolePolicyDocument")
    for statement in _statements(document):
        principal = statement.get("Principal")
        services = principal.get("Service") if isinstance(principal, dict) else None
        if "lambda.amazonaws.com" in list(_alternatives(services or [])):
            return True
    return False


def _check_lambda_role(logical_id, resource, where):
    crate = ROLE_CRATES.get(logical_id)
    if crate is None:
        return [f"{where}: Lambda execution role with no handler crate in check-policy.py's ROLE_CRATES"]
    allowed, _ = allowed_actions(crate)
    allowed_lower = {a.lower() for a in allowed}
    problems = []
    for label, document in _policy_documents(resource):
        for statement in _statements(document):
            if str(statement.get("Effect", "Allow")) != "Allow":
                continue
            resources = list(_alternatives(statement.get("Resource", [])))
            for action in _alternatives(statement.get("Action", [])):
                if not isinstance(action, str):
                    continue
                if action in DESTINATION_ACTIONS and crate in DESTINATION_CRATES:
                    if "*" in resources or not resources:
                        problems.append(f"{where}: {label} allows {action} on Resource \"*\": "
                                        "name the on-failure destination function")
                    continue
                if action.lower() not in allowed_lower:
                    problems.append(
                        f"{where}: {label} allows {action}, which crates/{crate} never calls "
                        "(remove it, or add it to PENDING for code on an unmerged branch)"
                    )
    return problems


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
                if all(a in STAR_ONLY_ACTIONS for a in actions):
                    continue
                if "*" in resources_:
                    sid = statement.get("Sid")
                    ident = f"Sid {sid!r}" if sid else f"statement #{index}"
                    problems.append(
                        f"{where}: {label} {ident} allows {', '.join(actions)} on Resource \"*\""
                    )

        if _is_lambda_role(resource):
            problems.extend(_check_lambda_role(logical_id, resource, where))

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


SELF_TEST_LAMBDA_ROLES = """
Resources:
  ListenerRulePriorityRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole
      Policies:
        - PolicyName: ok
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [logs:PutLogEvents, ssm:PutParameter, elasticloadbalancing:DescribeRules]
                Resource: !Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/x/*
        - PolicyName: uncalled
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [ssm:RemoveTagsFromResource, elasticloadbalancing:DescribeListeners]
                Resource: !Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/x/*
  AdminSecretRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: [lambda.amazonaws.com] }
            Action: sts:AssumeRole
      Policies:
        - PolicyName: aliases
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: kms:ListAliases
                Resource: "*"
              - Effect: Allow
                Action: [ssm:GetParameters]
                Resource: !Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/x/*
  ServiceDatabaseRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole
      Policies:
        - PolicyName: destination
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: lambda:InvokeFunction
                Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:dlr
        - PolicyName: any-function
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: lambda:InvokeFunction
                Resource: "*"
  DeadLetterResponderRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole
      Policies:
        - PolicyName: invoke
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [logs:PutLogEvents, lambda:InvokeFunction]
                Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:dlr
  StrayRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole
"""


def self_test():
    policy_problems = check_template(load_template(SELF_TEST_BAD_POLICY), "<bad-policy>")
    custom_problems = check_template(load_template(SELF_TEST_BAD_CUSTOM), "<bad-custom>")
    role_problems = check_template(load_template(SELF_TEST_LAMBDA_ROLES), "<lambda-roles>")
    called, _ = allowed_actions("listener-rule-priority")
    mapped = _sdk_actions({"aws-sdk-secretsmanager", "aws-sdk-ssm"},
                          {"get_secret_value", "unlabel_parameter_version"})
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
        ("the source scan finds listener-rule-priority's .put_parameter() and .describe_rules()",
         {"ssm:PutParameter", "elasticloadbalancing:DescribeRules"} <= called),
        (".get_secret_value() -> secretsmanager:GetSecretValue, .unlabel_parameter_version() -> "
         "ssm:UnlabelParameterVersion",
         {"secretsmanager:GetSecretValue", "ssm:UnlabelParameterVersion"} <= mapped),
        ("secretsmanager:GetSecretValue implies kms:Decrypt (Secrets Manager decrypts with the secret's key)",
         "kms:Decrypt" in IMPLIED["secretsmanager:GetSecretValue"]),
        ("an action the handler never calls (ssm:RemoveTagsFromResource) is caught",
         any("ListenerRulePriorityRole" in p and "ssm:RemoveTagsFromResource" in p for p in role_problems)),
        ("an ELBv2 action the handler never calls (DescribeListeners) is caught",
         any("elasticloadbalancing:DescribeListeners" in p for p in role_problems)),
        ("ssm:GetParameters on the admin-secret role is caught",
         any("AdminSecretRole" in p and "ssm:GetParameters" in p for p in role_problems)),
        ("called, platform (logs) and pending actions are not reported",
         not any(a in p for p in role_problems
                 for a in ("ssm:PutParameter", "logs:PutLogEvents", "DescribeRules,", "kms:ListAliases"))),
        ("kms:ListAliases alone on Resource \"*\" is the allowed exception",
         not any("ListAliases" in p for p in role_problems)),
        ("lambda:InvokeFunction on the named destination is allowed to a handler's role",
         not any("'destination'" in p for p in role_problems)),
        ("lambda:InvokeFunction on \"*\" is caught",
         any("ServiceDatabaseRole" in p and "'any-function'" in p for p in role_problems)),
        ("the dead-letter responder's role may not invoke functions (it calls no AWS API)",
         any("DeadLetterResponderRole" in p and "lambda:InvokeFunction" in p for p in role_problems)
         and not any("DeadLetterResponderRole" in p and "logs:PutLogEvents" in p for p in role_problems)),
        ("a Lambda role with no known handler crate is caught",
         any("StrayRole" in p and "ROLE_CRATES" in p for p in role_problems)),
    ]
    failed = False
    for name, ok in checks:
        print(f"self-test: {'ok  ' if ok else 'FAIL'} {name}")
        failed |= not ok
    if failed:
        print("self-test: problems reported were:", *policy_problems, *custom_problems, *role_problems,
              sep="\n  ")
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
    for crate in sorted(PENDING):
        stale = allowed_actions(crate)[1]
        if stale:
            print(f"check-policy: note: crates/{crate} now calls {', '.join(sorted(stale))}: "
                  "remove from PENDING")
    for problem in problems:
        print(problem)
    if problems:
        print(f"check-policy: {len(problems)} problem(s) in {len(paths)} template(s)")
        return 1
    print(f"check-policy: {len(paths)} template(s) OK: {' '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
