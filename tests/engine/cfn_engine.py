"""moto's CloudFormation engine with the real custom-resource Lambdas behind it.

    python tests/engine/cfn_engine.py -H 127.0.0.1 -p PORT        (arguments are moto_server's)

A local CloudFormation endpoint for *template evaluation*: moto server (pinned in
requirements.txt) evaluates cfn/*.yaml unmodified (parameters, conditions, intrinsics, exports and
imports, GetAtt into dependents). This file only patches the gaps those templates hit; each patch
says what real CloudFormation does. Update and rollback are not here: moto sends no Update, and
the lifecycle stays with the project's own driver.

- Custom:: resources: Create (and, on DeleteStack, Delete) go synchronously to the real Lambda
  binary named by the ServiceToken's function name, in ENGINE_BIN_DIR, through a Lambda Runtime
  API served here (one process per concurrent invocation, as Lambda runs environments). The
  binary PUTs its response to a pre-signed-URL look-alike served here; dependents are built only
  after it, with the real Data.
- AWS::RDS::DBCluster / DBInstance (moto has no Aurora in CloudFormation) are stand-ins on a
  throwaway PostgreSQL (ENGINE_PG_HOST, ENGINE_PG_ADDRESS, ENGINE_PG_PORT, ENGINE_PG_USER,
  ENGINE_PG_PASSWORD, ENGINE_PG_CA_FILE): the cluster resolves MasterUserPassword's dynamic
  reference and gives that password to the master user, as RDS would.

ENGINE_RECORD names a JSON-lines file that gets every event delivered and every response.
ENGINE_LOG_DIR gets each Lambda process's output. ENGINE_REGION is the binaries' AWS_REGION.
"""

import base64
import hashlib
import hmac
import http.server
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid

from moto import server
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing, utils
from moto.cloudformation.custom_model import CustomModel
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.responses import ActionResult, CloudFormationResponse
from moto.core.common_models import CloudFormationModel
from moto.elbv2.models import FakeListenerRule, FakeLoadBalancer, elbv2_backends
from moto.kms.models import Key
from moto.ssm import ssm_backends

REGION = os.environ.get("ENGINE_REGION", "us-east-1")
INVOCATION_TIMEOUT = 120  # seconds; the functions' Lambda timeout


def record(entry):
    path = os.environ.get("ENGINE_RECORD")
    if path:
        with RECORD_LOCK, open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


RECORD_LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def answer(self, code, body=b"", headers=()):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


def serve(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


# --- the ResponseURL: records the one PUT each request gets -------------------------------------

RESPONSES = {}
RESPONSES_CHANGED = threading.Condition()


class ResponseUrl(Handler):
    def do_PUT(self):  # noqa: N802
        request_id = self.path.split("?")[0].rsplit("/", 1)[-1]
        body = self.body()
        with RESPONSES_CHANGED:
            RESPONSES[request_id] = body
            RESPONSES_CHANGED.notify_all()
        self.answer(200)


RESPONSE_URL = None  # set in main()


# --- the Lambda Runtime API: one per environment (process) --------------------------------------


class Environment:
    """One Lambda execution environment: a process of the binary and its Runtime API."""

    def __init__(self, function):
        self.events = queue.Queue()
        self.outcomes = queue.Queue()
        env = self

        class RuntimeApi(Handler):
            def do_GET(self):  # noqa: N802
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self.answer(404)
                request_id, event = env.events.get()
                deadline = int((time.time() + INVOCATION_TIMEOUT) * 1000)
                return self.answer(200, event.encode(), [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", function.arn),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                    ("Content-Type", "application/json"),
                ])

            def do_POST(self):  # noqa: N802
                body = self.body().decode("utf-8", "replace")
                env.outcomes.put((self.path.rsplit("/", 1)[-1], body))
                self.answer(202, b'{"status":"OK"}')

        self.api = serve(RuntimeApi)
        log_dir = os.environ.get("ENGINE_LOG_DIR")
        log = open(os.path.join(log_dir, function.name + ".log") if log_dir else os.devnull,
                   "ab")  # noqa: SIM115 (kept open for the process's life)
        self.process = subprocess.Popen(
            [os.path.join(os.environ["ENGINE_BIN_DIR"], function.name)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={
                "PATH": os.environ.get("PATH", ""),
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.api.server_address[1]}",
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{os.environ['MOTO_PORT']}",
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        )

    def invoke(self, event):
        request_id = str(uuid.uuid4())
        self.events.put((request_id, json.dumps(event)))
        return self.outcomes.get(timeout=INVOCATION_TIMEOUT + 10)


class Function:
    """A deployed function: idle environments are reused, a busy one makes Lambda start another."""

    def __init__(self, name, arn):
        self.name, self.arn = name, arn
        self.idle = []
        self.lock = threading.Lock()

    def invoke(self, event):
        with self.lock:
            env = self.idle.pop() if self.idle else None
        env = env or Environment(self)
        try:
            return env.invoke(event)
        finally:
            with self.lock:
                self.idle.append(env)


FUNCTIONS = {}
FUNCTIONS_LOCK = threading.Lock()


def deliver(event):
    """Sends a custom-resource event to its function and returns the response it PUT."""
    arn = event["ServiceToken"]
    name = arn.rsplit(":", 1)[-1]
    with FUNCTIONS_LOCK:
        function = FUNCTIONS.setdefault(name, Function(name, arn))
    record({"event": event})
    function.invoke(event)
    with RESPONSES_CHANGED:
        RESPONSES_CHANGED.wait_for(lambda: event["RequestId"] in RESPONSES, timeout=10)
        body = RESPONSES.pop(event["RequestId"], None)
    response = json.loads(body) if body else {
        "Status": "FAILED", "Reason": f"{name} sent no response", "PhysicalResourceId": "none"}
    record({"response": response, "RequestId": event["RequestId"]})
    return response


# --- Custom:: resources -------------------------------------------------------------------------


class CustomResourceFailed(Exception):
    pass


def custom_event(request_type, resource, properties):
    request_id = str(uuid.uuid4())
    event = {
        "RequestType": request_type,
        "ServiceToken": properties["ServiceToken"],
        # A pre-signed S3 URL in real CloudFormation; moto's points at host.docker.internal.
        "ResponseURL": f"{RESPONSE_URL}/responses/{request_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                       "&X-Amz-Expires=7200&X-Amz-Signature=0123456789abcdef",
        "StackId": resource.stack_id,
        "RequestId": request_id,
        "LogicalResourceId": resource.logical_id,
        "ResourceType": resource.resource_type,
        "ResourceProperties": properties,
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = resource.resource_name
    return event


def create_custom(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    # moto invokes the function on a background thread (in Docker) and builds the dependents at
    # once with GetAtt values of None. CloudFormation waits for the response, then creates what
    # depends on the resource with the response's Data; Ref gives its PhysicalResourceId.
    resource = CustomModel(region_name, "", kwargs["LogicalId"], resource_name)
    resource.stack_id, resource.resource_type = kwargs["StackId"], kwargs["ResourceType"]
    resource.properties = cloudformation_json["Properties"]
    if resource.resource_type == "Custom::ServiceDatabase" and os.environ.get("ENGINE_PG_CA_FILE"):
        # The one property added to what the template gives: the stand-in cluster's certificate
        # comes from a test CA, where an Aurora cluster's chains to the RDS bundle built into
        # the binary. CaCertificate is the handler's documented way to trust one more CA.
        with open(os.environ["ENGINE_PG_CA_FILE"], encoding="utf-8") as ca:
            resource.properties.setdefault("CaCertificate", ca.read())
    response = deliver(custom_event("Create", resource, resource.properties))
    resource.resource_name = response.get("PhysicalResourceId") or resource_name
    if response.get("Status") != "SUCCESS":
        raise CustomResourceFailed(
            f"Received response status [FAILED] from custom resource. Message returned: "
            f"{response.get('Reason')}")
    resource.set_data(response.get("Data") or {})
    from moto.cloudformation import cloudformation_backends
    cloudformation_backends[account_id][region_name].get_stack(resource.stack_id).add_custom_resource(resource)
    return resource


def delete_custom(self, account_id, region_name):
    # moto sends no Delete. CloudFormation sends one with the physical id and the properties.
    response = deliver(custom_event("Delete", self, self.properties))
    if response.get("Status") != "SUCCESS":
        raise CustomResourceFailed(f"Delete failed: {response.get('Reason')}")


def custom_attribute(self, name):
    # moto answers None for a key the response lacks (the property then silently disappears).
    # CloudFormation fails the dependent: "Vendor response doesn't contain <key> key in object".
    if name not in self.data:
        raise CustomResourceFailed(
            f"CustomResource attribute error: Vendor response doesn't contain {name} key in object "
            f"{self.logical_id}")
    return self.data[name]


CustomModel.create_from_cloudformation_json = classmethod(create_custom)
CustomModel.delete = delete_custom
CustomModel.get_cfn_attribute = custom_attribute


# --- Aurora stand-ins on the throwaway PostgreSQL -----------------------------------------------


def scram_verifier(password):
    """The SCRAM-SHA-256 verifier PostgreSQL stores: the clear text never reaches the server."""
    salt, iterations = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def resolve_dynamic_reference(value, account_id, region_name):
    # moto passes "{{resolve:ssm-secure:NAME:VERSION}}" through as a literal. CloudFormation
    # resolves it (for the properties that support it) before calling the resource's service.
    match = re.fullmatch(r"\{\{resolve:ssm-secure:([^:}]+)(?::(\d+))?\}\}", value or "")
    if not match:
        raise ValidationError(message="MasterUserPassword is not an ssm-secure dynamic reference")
    name, version = match.group(1), match.group(2)
    parameter = ssm_backends[account_id][region_name].get_parameter(f"{name}:{version}" if version else name)
    if parameter is None or parameter.parameter_type != "SecureString":
        raise ValidationError(message=f"{name}:{version} is not an SSM SecureString")
    return parameter.decrypt(parameter.value)


def psql(sql):
    env = dict(os.environ, PGUSER=os.environ["ENGINE_PG_USER"], PGPASSWORD=os.environ["ENGINE_PG_PASSWORD"])
    dsn = (f"host={os.environ['ENGINE_PG_HOST']} hostaddr={os.environ['ENGINE_PG_ADDRESS']} "
           f"port={os.environ['ENGINE_PG_PORT']} dbname=postgres sslmode=verify-full "
           f"sslrootcert={os.environ['ENGINE_PG_CA_FILE']}")
    done = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValidationError(message=f"stand-in cluster: psql failed: {done.stderr.strip()}")


class AuroraCluster(CloudFormationModel):
    """AWS::RDS::DBCluster: the throwaway PostgreSQL, whose master user gets MasterUserPassword."""

    __module__ = "moto.rds.engine_stand_in"  # moto files every model under its service's name

    def __init__(self, name, properties):
        self.name, self.properties = name, properties

    @staticmethod
    def cloudformation_type():
        return "AWS::RDS::DBCluster"

    @staticmethod
    def cloudformation_name_type():
        return "DBClusterIdentifier"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        user = properties["MasterUsername"].replace('"', '""')
        password = resolve_dynamic_reference(properties.get("MasterUserPassword"), account_id, region_name)
        verifier = scram_verifier(password).replace("'", "''")
        psql(f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
             f"CREATE ROLE \"{user}\" LOGIN CREATEDB CREATEROLE; END IF; END$$; "
             f"ALTER ROLE \"{user}\" PASSWORD '{verifier}'")
        return cls(resource_name.lower(), properties)

    @property
    def physical_resource_id(self):
        return self.name

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr in ("Endpoint.Address", "Endpoint.Port", "ReadEndpoint.Address", "DBClusterArn")

    def get_cfn_attribute(self, attribute_name):
        if attribute_name in ("Endpoint.Address", "ReadEndpoint.Address"):
            return os.environ["ENGINE_PG_HOST"]
        if attribute_name == "Endpoint.Port":
            return os.environ["ENGINE_PG_PORT"]
        return f"arn:aws:rds:{REGION}:123456789012:cluster:{self.name}"

    def delete(self, account_id, region_name):
        pass  # the throwaway PostgreSQL outlives the stack (DeletionPolicy: Snapshot keeps the data)


class AuroraInstance(CloudFormationModel):
    """AWS::RDS::DBInstance of an Aurora cluster: a name (the cluster's PostgreSQL serves it)."""

    __module__ = "moto.rds.engine_stand_in"

    def __init__(self, name):
        self.name = name

    @staticmethod
    def cloudformation_type():
        return "AWS::RDS::DBInstance"

    @staticmethod
    def cloudformation_name_type():
        return "DBInstanceIdentifier"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        # moto's own DBInstance raises KeyError for an Aurora member (no storage properties).
        return cls(resource_name.lower())

    @property
    def physical_resource_id(self):
        return self.name

    def delete(self, account_id, region_name):
        pass


MODEL_MAP = dict(parsing.get_model_map(), **{
    "AWS::RDS::DBCluster": AuroraCluster, "AWS::RDS::DBInstance": AuroraInstance})
parsing.get_model_map = lambda: MODEL_MAP


# --- moto bugs the templates hit ----------------------------------------------------------------


def yaml_tag_constructor(loader, tag, node):
    # moto splits `!GetAtt A.B.C` on every dot and keeps two parts (A, B). CloudFormation splits
    # on the first dot only: resource A, attribute B.C (e.g. DatabaseCluster.Endpoint.Address).
    if tag == "!GetAtt" and not isinstance(node.value, list):
        return {"Fn::GetAtt": node.value.split(".", 1)}
    return ORIGINAL_YAML_TAG_CONSTRUCTOR(loader, tag, node)


ORIGINAL_YAML_TAG_CONSTRUCTOR = utils.yaml_tag_constructor
cfn_models.yaml_tag_constructor = yaml_tag_constructor

ORIGINAL_KEY_CREATE = Key.create_from_cloudformation_json.__func__


def without_no_value(value):
    """The value with the items and keys moto resolved from AWS::NoValue (None) removed."""
    if isinstance(value, dict):
        return {k: without_no_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_no_value(v) for v in value if v is not None]
    return value


def create_key(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    # CloudFormation takes KeyPolicy as a JSON object and gives KMS the document; moto stores the
    # object itself, and DescribeKey/GetKeyPolicy then fail to serialise it.
    # moto also leaves `!Ref AWS::NoValue` (an `!If` branch not taken) as null in a list, where
    # CloudFormation drops the item: a key policy with a conditional statement (rds-cluster.yaml)
    # would hold `null` in its Statement list.
    properties = cloudformation_json["Properties"]
    if isinstance(properties.get("KeyPolicy"), dict):
        properties["KeyPolicy"] = json.dumps(without_no_value(properties["KeyPolicy"]))
    return ORIGINAL_KEY_CREATE(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


Key.create_from_cloudformation_json = classmethod(create_key)

ORIGINAL_LB_ATTRIBUTE = FakeLoadBalancer.get_cfn_attribute


def load_balancer_attribute(self, name):
    # moto leaves GetAtt CanonicalHostedZoneID unresolved (the output then holds the intrinsic
    # itself); CloudFormation gives the load balancer's Route 53 zone id.
    if name == "CanonicalHostedZoneID":
        return self.canonical_hosted_zone_id
    return ORIGINAL_LB_ATTRIBUTE(self, name)


FakeLoadBalancer.get_cfn_attribute = load_balancer_attribute


def delete_listener_rule(self, account_id, region_name):
    # moto leaves a stack's listener rule on the listener; CloudFormation deletes it (and so
    # frees its priority).
    elbv2_backends[account_id][region_name].delete_rule(self.arn)


FakeListenerRule.delete = delete_listener_rule

ORIGINAL_CREATE_STACK = cfn_models.CloudFormationBackend.create_stack


def create_stack(self, name, *args, **kwargs):
    # A resource that fails makes moto's CreateStack call itself fail and leaves the stack
    # CREATE_PENDING for ever. CloudFormation reports CREATE_FAILED with the reason (and then
    # rolls back; rollback is not played here).
    try:
        return ORIGINAL_CREATE_STACK(self, name, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 (any resource's failure fails the stack)
        stack = next((s for s in self.stacks.values() if s.name == name), None)
        if stack is None:
            raise
        stack.status = "CREATE_FAILED"
        stack._add_stack_event("CREATE_FAILED", resource_status_reason=str(error))
        return stack


cfn_models.CloudFormationBackend.create_stack = create_stack


def delete_resources(self):
    # moto deletes in a random order (retrying what raises). CloudFormation deletes in reverse
    # dependency order: a resource only after everything that references it. moto creates a
    # resource's references first, so the reverse of its creation order is that order.
    for logical_id in reversed(list(self._parsed_resources)):
        resource = self._parsed_resources[logical_id]
        template = self._resource_json_map.get(logical_id)
        if template is None or resource is None or isinstance(resource, (str, int, float, list)):
            continue
        if template.get("DeletionPolicy") != "Retain":
            self._delete_resource(resource, template)
        self._parsed_resources.pop(logical_id)


parsing.ResourceMap.delete = delete_resources

IMPORTERS = {}  # export name -> stack ids that imported it
ORIGINAL_CLEAN_JSON = parsing.clean_json


def clean_json(resource_json, resources_map):
    value = ORIGINAL_CLEAN_JSON(resource_json, resources_map)
    if isinstance(resource_json, dict) and "Fn::ImportValue" in resource_json:
        name = ORIGINAL_CLEAN_JSON(resource_json["Fn::ImportValue"], resources_map)
        IMPORTERS.setdefault(name, set()).add(resources_map.stack_id)
    return value


parsing.clean_json = clean_json
ORIGINAL_DELETE_STACK = cfn_models.CloudFormationBackend.delete_stack


def delete_stack(self, name_or_stack_id):
    # moto deletes a stack whose exports other stacks import. CloudFormation refuses:
    # "Export X cannot be deleted as it is in use by Y".
    for stack in list(self.stacks.values()):
        if name_or_stack_id not in (stack.name, stack.stack_id):
            continue
        # moto ignores termination protection; CloudFormation refuses the delete.
        if stack.enable_termination_protection:
            raise ValidationError(
                message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled")
        for export in stack.exports:
            users = [self.stacks[s].name for s in IMPORTERS.get(export.name, ()) if s in self.stacks
                     and s != stack.stack_id]
            if users:
                raise ValidationError(
                    message=f"Export {export.name} cannot be deleted as it is in use by {users[0]}")
        # Outputs are evaluated lazily; once deleted, nothing is left to evaluate them against.
        stack.outputs_at_delete = stack.outputs
        try:
            ORIGINAL_DELETE_STACK(self, stack.stack_id)
        except Exception as error:  # noqa: BLE001
            # moto drops the stack from its list when a resource fails to delete; CloudFormation
            # keeps it as DELETE_FAILED.
            self.stacks[stack.stack_id] = stack
            stack.status = "DELETE_FAILED"
            stack._add_stack_event("DELETE_FAILED", resource_status_reason=str(error))


cfn_models.CloudFormationBackend.delete_stack = delete_stack


def list_imports(self):
    # moto has no ListImports; CloudFormation lists the stacks that import an export.
    name = self._get_param("ExportName")
    backend = self.cloudformation_backend
    users = sorted(backend.stacks[s].name for s in IMPORTERS.get(name, ()) if s in backend.stacks)
    if not users:
        raise ValidationError(message=f"Export '{name}' is not imported by any stack.")
    return ActionResult({"Imports": users})


CloudFormationResponse.list_imports = list_imports


def update_termination_protection(self):
    # moto has no UpdateTerminationProtection (the way to delete a protected stack).
    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    stack.enable_termination_protection = self._get_param("EnableTerminationProtection") in (True, "true")
    return ActionResult({"StackId": stack.stack_id})


CloudFormationResponse.update_termination_protection = update_termination_protection
ORIGINAL_OUTPUTS = cfn_models.Stack.outputs.fget

# Describing a stack evaluates its outputs and resources again, and moto's lazy resource map
# creates whatever is missing: a failed custom resource is sent Create again, a deleted stack's
# resources are all re-created. CloudFormation shows what exists: outputs only of a completed
# stack (a deleted one keeps its record), resources that were created.
def outputs(self):
    if self.status == "DELETE_COMPLETE":
        return getattr(self, "outputs_at_delete", None)
    return ORIGINAL_OUTPUTS(self) if self.status.endswith("_COMPLETE") else None


cfn_models.Stack.outputs = property(outputs)
cfn_models.Stack.stack_resources = property(
    lambda self: [r for r in self.resource_map._parsed_resources.values() if isinstance(r, CloudFormationModel)])


def main():
    global RESPONSE_URL  # noqa: PLW0603
    RESPONSE_URL = f"http://127.0.0.1:{serve(ResponseUrl).server_address[1]}"
    argv = sys.argv[1:]
    port = dict(itertools.zip_longest(argv[::2], argv[1::2])).get("-p")
    if port:
        os.environ["MOTO_PORT"] = port
    server.main(argv)


if __name__ == "__main__":
    main()
