#!/usr/bin/env python3
"""Deploys the three custom-resource Lambdas with `cargo lambda deploy`.

The IAM roles, the database Lambda's subnets and security group come from the support stack's
outputs (cfn/support.yaml). With --dry-run nothing calls AWS: the commands are printed with the
support stack's outputs shown as placeholders, unless they are given with --output KEY=VALUE.

Usage: deploy.py [--dry-run] [--support-stack NAME] [--region REGION] [--output KEY=VALUE ...]
"""

import argparse
import shlex
import subprocess
import sys

# function name (= binary name) -> (role output, in the VPC?, environment from outputs)
FUNCTIONS = [
    ("admin-secret", "AdminSecretRoleArn", False, {}),
    ("service-database", "ServiceDatabaseRoleArn", True, {}),
    # Claims must live where the role may write them.
    ("listener-rule-priority", "ListenerRulePriorityRoleArn", False, {"PRIORITY_CLAIM_PATH": "PriorityClaimPath"}),
]
# Custom resources answer CloudFormation well before this; the handler keeps
# CFN_RESPONSE_MARGIN_MS back to send FAILED in time.
TIMEOUT_SECONDS = "120"
MEMORY_MB = "128"


def stack_outputs(stack, region):
    import boto3  # only needed for a real deploy

    client = boto3.client("cloudformation", region_name=region)
    stacks = client.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def commands(outputs, region):
    for name, role_key, in_vpc, env_outputs in FUNCTIONS:
        command = ["cargo", "lambda", "deploy", name,
                   "--binary-name", name,
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
        yield command


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--support-stack", default="platform-support")
    parser.add_argument("--region", default=None)
    parser.add_argument("--output", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    given = dict(item.split("=", 1) for item in args.output)
    needed = {key for _, key, _, _ in FUNCTIONS} | {"ServiceDatabaseSubnetIds", "ServiceDatabaseSecurityGroupId"}
    needed |= {output for *_, env in FUNCTIONS for output in env.values()}
    if args.dry_run:
        outputs = {key: given.get(key, f"<{args.support_stack}:{key}>") for key in needed}
    else:
        outputs = {**stack_outputs(args.support_stack, args.region), **given}
        missing = sorted(needed - outputs.keys())
        if missing:
            sys.exit(f"stack {args.support_stack} has no output(s) {', '.join(missing)}: deploy cfn/support.yaml first")

    for command in commands(outputs, args.region):
        print(shlex.join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
