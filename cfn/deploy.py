#!/usr/bin/env python3
"""Deploys the three custom-resource Lambdas and their dead-letter responder with `cargo lambda deploy`.

Everything comes from the support stack (cfn/support.yaml): the function names, the IAM roles, the
database Lambda's subnets and security group, the priority claim path and what any stack may ask
for (AllowAdopt -> CFN_ALLOW_ADOPT, AllowReturnPassword -> CFN_ALLOW_RETURN_PASSWORD). After each
deploy the function's log format is set to JSON (cargo lambda deploy has no flag for it), into the
log group the support stack made. With --dry-run nothing calls AWS: the commands are printed with
the support stack's outputs shown as placeholders, unless they are given with --output KEY=VALUE.

The dead-letter responder goes first. The functions' on-failure destinations (EventInvokeConfigs)
are the support stack's, behind its DeadLetterWiring parameter: they need the functions to exist,
so after the first deploy update the support stack with DeadLetterWiring=true (printed below when
it is still false).

Usage: deploy.py [--dry-run] [--support-stack NAME] [--region REGION] [--output KEY=VALUE ...]
       deploy.py --self-test      (against a moto server it starts; needs the project venv)
"""

import argparse
import json
import shlex
import subprocess
import sys

# binary -> (function name output, role output, in the VPC?, environment variable -> output)
FUNCTIONS = [
    # The on-failure destination of the three below (cfn/support.yaml, DeadLetterWiring).
    ("dead-letter-responder", "DeadLetterResponderFunctionName", "DeadLetterResponderRoleArn", False, {}),
    ("admin-secret", "AdminSecretFunctionName", "AdminSecretRoleArn", False,
     {"CFN_ALLOW_ADOPT": "AllowAdopt", "CFN_ALLOW_RETURN_PASSWORD": "AllowReturnPassword"}),
    ("service-database", "ServiceDatabaseFunctionName", "ServiceDatabaseRoleArn", True,
     {"CFN_ALLOW_ADOPT": "AllowAdopt"}),
    # Claims must live where the role may write them.
    ("listener-rule-priority", "ListenerRulePriorityFunctionName", "ListenerRulePriorityRoleArn", False,
     {"PRIORITY_CLAIM_PATH": "PriorityClaimPath"}),
]
VPC_OUTPUTS = ("ServiceDatabaseSubnetIds", "ServiceDatabaseSecurityGroupId")
# Custom resources answer CloudFormation well before this; the handler keeps
# CFN_RESPONSE_MARGIN_MS back to send FAILED in time.
TIMEOUT_SECONDS = "120"
MEMORY_MB = "128"
# JSON lines (one event a line) for Logs Insights; the level is read by lambda_runtime from
# AWS_LAMBDA_LOG_LEVEL, which Lambda sets from ApplicationLogLevel.
LOGGING_CONFIG = {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}


def needed_outputs():
    needed = set(VPC_OUTPUTS)
    for _, name_key, role_key, _, env in FUNCTIONS:
        needed |= {name_key, role_key, *env.values()}
    return needed


def stack_outputs(cloudformation, stack):
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def plan(outputs, region):
    """(function name, cargo lambda deploy command, LoggingConfig) for each function."""
    for binary, name_key, role_key, in_vpc, env_outputs in FUNCTIONS:
        name = outputs[name_key]
        command = ["cargo", "lambda", "deploy", name,
                   "--binary-name", binary,
                   "--iam-role", outputs[role_key],
                   "--timeout", TIMEOUT_SECONDS,
                   "--memory", MEMORY_MB,
                   "--env-var", "CFN_RESPONSE_MARGIN_MS=5000",
                   "--tag", "platform=custom-resources"]
        for variable, output in env_outputs.items():
            command += ["--env-var", f"{variable}={outputs[output]}"]
        if region:
            command += ["--region", region]
        if in_vpc:
            command += ["--subnet-ids", outputs["ServiceDatabaseSubnetIds"],
                        "--security-group-ids", outputs["ServiceDatabaseSecurityGroupId"]]
        yield name, command, {**LOGGING_CONFIG, "LogGroup": f"/aws/lambda/{name}"}


def set_logging(lambda_client, name, logging_config):
    # The function must have finished updating (cargo lambda deploy's update) first.
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    lambda_client.update_function_configuration(FunctionName=name, LoggingConfig=logging_config)


def deploy(args, session=None, run=subprocess.run):
    given = dict(item.split("=", 1) for item in args.output)
    needed = needed_outputs()
    if args.dry_run:
        outputs = {key: given.get(key, f"<{args.support_stack}:{key}>") for key in needed}
        lambda_client = None
    else:
        if session is None:
            import boto3  # only needed for a real deploy

            session = boto3.session.Session(region_name=args.region)
        outputs = {**stack_outputs(session.client("cloudformation"), args.support_stack), **given}
        missing = sorted(needed - outputs.keys())
        if missing:
            sys.exit(f"stack {args.support_stack} has no output(s) {', '.join(missing)}: "
                     "deploy (or update) cfn/support.yaml first")
        lambda_client = session.client("lambda")

    for name, command, logging_config in plan(outputs, args.region):
        print(shlex.join(command), flush=True)
        print(f"# then: lambda UpdateFunctionConfiguration {name} LoggingConfig={json.dumps(logging_config)}",
              flush=True)
        if not args.dry_run:
            run(command, check=True)
            set_logging(lambda_client, name, logging_config)
    if outputs.get("DeadLetterWiring") != "true":
        print(f"# then: update stack {args.support_stack} with DeadLetterWiring=true (previous template and "
              "other parameters): each function's on-failure destination, the dead-letter responder, "
              "needs the functions to exist", flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--support-stack", default="platform-support")
    parser.add_argument("--region", default=None)
    parser.add_argument("--output", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def self_test():
    """Against moto: a stack with the support stack's outputs, the deploy commands read from it
    (cargo lambda replaced by creating the function in moto), and the LoggingConfig update moto
    accepted for each function (moto does not store LoggingConfig, so the request is checked)."""
    import io
    import os
    import socket
    import time
    import zipfile
    from pathlib import Path

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        session = boto3.session.Session(region_name="us-east-1")

        sent = {}  # moto accepts LoggingConfig but does not store it: record what was sent

        def record(params, **_):
            sent[params["FunctionName"]] = params.get("LoggingConfig", {})

        class Session:
            def client(self, service):
                client = session.client(service, endpoint_url=endpoint)
                client.meta.events.register("provide-client-params.lambda.UpdateFunctionConfiguration", record)
                return client

        for _ in range(100):
            try:
                Session().client("cloudformation").list_stacks()
                break
            except Exception:  # noqa: BLE001 - moto still starting
                time.sleep(0.1)
        iam = Session().client("iam")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                   "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        values = {"AdminSecretFunctionName": "a-s", "ServiceDatabaseFunctionName": "s-d",
                  "ListenerRulePriorityFunctionName": "l-r-p", "AdminSecretRoleArn": role,
                  "ServiceDatabaseRoleArn": role, "ListenerRulePriorityRoleArn": role,
                  "ServiceDatabaseSubnetIds": "subnet-1,subnet-2", "ServiceDatabaseSecurityGroupId": "sg-1",
                  "PriorityClaimPath": "/claims", "AllowAdopt": "false", "AllowReturnPassword": "true",
                  "DeadLetterResponderFunctionName": "d-l-r", "DeadLetterResponderRoleArn": role,
                  "DeadLetterWiring": "false"}
        template = {"Resources": {"Nothing": {"Type": "AWS::SSM::Parameter",
                                              "Properties": {"Name": "/x", "Type": "String", "Value": "x"}}},
                    "Outputs": {k: {"Value": v} for k, v in values.items()}}
        Session().client("cloudformation").create_stack(StackName="support", TemplateBody=json.dumps(template))

        lambda_client = Session().client("lambda")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("bootstrap", "")
        commands = []

        def run(command, check):
            # What `cargo lambda deploy NAME ... --env-var K=V` does, in moto.
            commands.append(command)
            env = dict(command[i + 1].split("=", 1) for i, a in enumerate(command) if a == "--env-var")
            lambda_client.create_function(
                FunctionName=command[3], Role=command[command.index("--iam-role") + 1],
                Runtime="provided.al2023", Handler="bootstrap", Code={"ZipFile": buffer.getvalue()},
                Environment={"Variables": env})

        printed = io.StringIO()
        real_stdout, sys.stdout = sys.stdout, printed
        try:
            deploy(parse(["--support-stack", "support"]), session=Session(), run=run)
        finally:
            sys.stdout = real_stdout
        by_name = {c[3]: c for c in commands}
        checks = [
            ("function names come from the stack's outputs", sorted(by_name) == ["a-s", "d-l-r", "l-r-p", "s-d"]),
            ("the dead-letter responder is deployed first, from its own binary, with its own role",
             bool(commands) and commands[0][3] == "d-l-r" and "dead-letter-responder" in commands[0]),
            ("with DeadLetterWiring false, the support stack update that wires it is printed",
             "DeadLetterWiring=true" in printed.getvalue()),
            ("admin-secret gets CFN_ALLOW_ADOPT=false and CFN_ALLOW_RETURN_PASSWORD=true",
             {"CFN_ALLOW_ADOPT=false", "CFN_ALLOW_RETURN_PASSWORD=true"} <= set(by_name.get("a-s", []))),
            ("service-database gets CFN_ALLOW_ADOPT and not CFN_ALLOW_RETURN_PASSWORD",
             "CFN_ALLOW_ADOPT=false" in by_name.get("s-d", [])
             and not any(a.startswith("CFN_ALLOW_RETURN") for a in by_name.get("s-d", []))),
            ("service-database runs in the stack's subnets", "subnet-1,subnet-2" in by_name.get("s-d", [])),
        ]
        for name in ("a-s", "s-d", "l-r-p", "d-l-r"):
            config = sent.get(name, {})
            checks.append((f"{name} logs JSON into /aws/lambda/{name} (got {config})",
                           config.get("LogFormat") == "JSON" and config.get("LogGroup") == f"/aws/lambda/{name}"))
        for name, ok in checks:
            print(f"self-test: {'ok  ' if ok else 'FAIL'} {name}")
            if not ok:
                failures.append(name)
    finally:
        moto.terminate()
        moto.wait()
    print("self-test: passed" if not failures else f"self-test: {len(failures)} failed")
    return 1 if failures else 0


def main():
    args = parse(sys.argv[1:])
    if args.self_test:
        sys.exit(self_test())
    deploy(args)


if __name__ == "__main__":
    main()
