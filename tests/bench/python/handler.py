"""Custom::AdminSecret the usual way: crhelper + boto3 under awslambdaric.

The comparison for `make bench`: Create writes a fresh SecureString (one PutParameter, the ARN
computed from the StackId as our Lambda does), Update rewrites it, Delete removes it.
"""

import secrets
import string

import boto3
from crhelper import CfnResource

helper = CfnResource(json_logging=False, log_level="WARNING", boto_level="CRITICAL", sleep_on_delete=0)
ssm = boto3.client("ssm")
ALPHABET = string.ascii_letters + string.digits


def _password(length=32):
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _arn(stack_id, region, name):
    _, partition, _, _, account = stack_id.split(":")[:5]
    return f"arn:{partition}:ssm:{region}:{account}:parameter{'' if name.startswith('/') else '/'}{name}"


@helper.create
@helper.update
def create(event, _context):
    props = event["ResourceProperties"]
    name = props["ParameterName"]
    ssm.put_parameter(
        Name=name,
        Value=_password(int(props.get("Length", 32))),
        Type="SecureString",
        KeyId=props["KeyId"],
        Overwrite=event["RequestType"] == "Update",
    )
    helper.Data["ParameterName"] = name
    helper.Data["ParameterArn"] = _arn(event["StackId"], ssm.meta.region_name, name)
    return name


@helper.delete
def delete(event, _context):
    try:
        ssm.delete_parameter(Name=event["PhysicalResourceId"])
    except ssm.exceptions.ParameterNotFound:
        pass


def handler(event, context):
    helper(event, context)
