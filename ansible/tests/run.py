#!/usr/bin/env python3
"""Runs the fargate_service role with ansible-playbook against moto's CloudFormation.

Run by `make test-ansible` with the .venv-ansible interpreter (ansible-core, boto3, moto[server])
and ANSIBLE_COLLECTIONS_PATH naming the unpacked amazon.aws collection. Each check reads back
what AWS (moto) received, not what the role says it did:

- bad input (missing, wrongly typed, outside its choices, identifiers the template cannot mask)
  fails naming the variable, and a recording endpoint sees no request at all;
- the real cfn/service.yaml: the stack moto holds has exactly that template text, the
  parameters the playbook implies (only those the template declares), CAPABILITY_IAM (it has an
  IAM role), the tags and termination protection; moto never completes its Custom:: resources,
  so the stack stays in progress and the role must fail after its wait timeout, printing events;
- a template moto can complete: only its declared parameters are sent, no capabilities, the
  outputs are printed; `fargate_service_delete: true` removes the stack;
- the success path: behind tests/engine/cfn_engine.py (moto's CloudFormation with the real
  release Lambdas answering and Aurora stood in for by a throwaway PostgreSQL), after the three
  platform stacks of cfn/, `ansible/examples/orders/deploy.yml` takes the real cfn/service.yaml to
  CREATE_COMPLETE and prints its outputs, and `delete.yml` removes it, a Delete reaching each
  custom resource.
"""

import base64
import http.server
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import boto3
import yaml

HERE = Path(__file__).resolve().parent
ANSIBLE_DIR = HERE.parent
REPO = ANSIBLE_DIR.parent
SERVICE_TEMPLATE = REPO / "cfn" / "service.yaml"
SIMPLE_TEMPLATE = HERE / "simple-service.yaml"
BIN = Path(sys.executable).parent
REGION = "eu-west-1"
ENGINE_DIR = REPO / "tests" / "engine"
ENGINE_REGION = "us-east-1"  # the region tests/engine/stacks.py deploys the platform stacks in

RESULTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + name + ("" if ok or not detail else "\n       " + str(detail)[:2000]))
    sys.stdout.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder(http.server.BaseHTTPRequestHandler):
    """An endpoint that records every request and answers 500: bad input must never reach it."""

    requests = []

    def _any(self):
        Recorder.requests.append((self.command, self.path))
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *_args):
        pass


def start_recorder():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_moto(port, log, recording):
    # moto's recorder keeps every request it receives (bodies included): moto itself does not
    # keep a stack's Capabilities, so they are read from the CreateStack request on the wire.
    env = dict(os.environ, MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=str(recording))
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start; see " + log.name)


def create_stack_requests(recording, stack):
    """The CreateStack requests for STACK that moto received, as decoded form fields."""
    found = []
    for line in Path(recording).read_text().splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8")
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        if fields.get("Action") == "CreateStack" and fields.get("StackName") == stack:
            found.append(fields)
    return found


def members(fields, prefix):
    """Query-protocol list prefix.member.N (N from 1), in order."""
    out, i = [], 1
    while f"{prefix}.member.{i}" in fields:
        out.append(fields[f"{prefix}.member.{i}"])
        i += 1
    return out


def aws_env(endpoint, region=REGION):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=region,
        AWS_REGION=region, AWS_ENDPOINT_URL=endpoint, ANSIBLE_ROLES_PATH=str(ANSIBLE_DIR / "roles"),
        ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
    )
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(k, None)
    return env


PLAYBOOK = """---
- name: Deploy one service
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: fargate_service
"""


def run_role(tmp, endpoint, variables, name, playbook=None, region=REGION):
    if playbook is None:
        playbook = tmp / "play.yml"
        playbook.write_text(PLAYBOOK)
    varfile = tmp / f"{name}.json"
    varfile.write_text(json.dumps(variables))
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), str(playbook), "-e", "@" + str(varfile),
         "-e", "ansible_python_interpreter=" + sys.executable],
        env=aws_env(endpoint, region), capture_output=True, text=True, timeout=300, check=False,
    )
    out = proc.stdout + proc.stderr
    (tmp / f"{name}.log").write_text(out)
    print(f"     ({name}: ansible-playbook exit {proc.returncode} in {time.monotonic() - started:.1f} s)")
    return proc.returncode, out


def any_tag_yaml(text):
    class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        pass

    def construct(loader, _suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", construct)
    return yaml.load(text, Loader=Loader)  # nosec B506


BASE_VARS = {
    "fargate_service_name": "orders",
    "fargate_service_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/orders:1.4.2",
    "fargate_service_host_name": "orders.example.com",
    "fargate_service_hosted_zone_id": "Z0123456789ABCDEFGHIJ",
}


def bad_input_checks(tmp):
    server, endpoint = start_recorder()
    cases = [
        ("missing required variable", {k: v for k, v in BASE_VARS.items() if k != "fargate_service_image"},
         "fargate_service_image"),
        ("misspelt variable name (the required one is then missing)",
         {**{k: v for k, v in BASE_VARS.items() if k != "fargate_service_host_name"},
          "fargate_service_hostname": "orders.example.com"}, "fargate_service_host_name"),
        ("wrong type", {**BASE_VARS, "fargate_service_desired_count": "two"}, "fargate_service_desired_count"),
        ("value outside its choices", {**BASE_VARS, "fargate_service_cpu": "300"}, "fargate_service_cpu"),
        ("wrong type for tags", {**BASE_VARS, "fargate_service_tags": ["team"]}, "fargate_service_tags"),
        ("identifiers the template cannot mask",
         {**BASE_VARS, "fargate_service_template": str(SIMPLE_TEMPLATE),
          "fargate_service_masked_data_identifiers": ["EmailAddress"]},
         "fargate_service_masked_data_identifiers"),
    ]
    for i, (what, variables, var) in enumerate(cases):
        before = len(Recorder.requests)
        rc, out = run_role(tmp, endpoint, variables, f"bad-{i}")
        check(f"{what}: the play fails", rc != 0, out[-1500:])
        check(f"{what}: the error names {var}", var in out and "FAILED" in out, out[-1500:])
        check(f"{what}: no request reached the AWS endpoint", len(Recorder.requests) == before,
              Recorder.requests[before:])
    server.shutdown()


def platform_resources(endpoint):
    """What the three platform stacks would have made, created in moto, by export name.

    The ServiceToken functions exist, but moto cannot run them (it runs Lambdas in Docker, and
    there is no daemon), so the Custom:: resources never complete: the service stack stays in
    progress, as on AWS when a custom resource's Lambda never answers."""
    kwargs = dict(region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
    ec2 = boto3.client("ec2", **kwargs)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")
               ["Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
    sg = ec2.create_security_group(GroupName="containers", Description="test", VpcId=vpc)["GroupId"]
    elbv2 = boto3.client("elbv2", **kwargs)
    lb = elbv2.create_load_balancer(Name="test-alb", Subnets=subnets, SecurityGroups=[sg])["LoadBalancers"][0]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    cluster = boto3.client("ecs", **kwargs).create_cluster(clusterName="test-cluster")["cluster"]["clusterName"]
    iam = boto3.client("iam", **kwargs)
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = iam.create_role(RoleName="test-lambda", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    execution = iam.create_role(RoleName="test-execution", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    values = {
        "VpcId": vpc, "ServiceSubnetIds": ",".join(subnets), "ContainerSecurityGroupId": sg,
        "ListenerArn": listener, "LoadBalancerDNSName": lb["DNSName"],
        "LoadBalancerCanonicalHostedZoneId": lb["CanonicalHostedZoneId"], "ClusterName": cluster,
        "TaskExecutionRoleArn": execution, "ServiceLogGroupPrefix": "/platform/services",
        "ServiceDatabaseRoleArn": role, "ServiceParameterPath": "/platform/services",
        "Host": "db.example.internal", "Port": "5432", "AdminUsername": "admin",
        "AdminCredential": "/platform/admin/password", "WriterInstanceId": "test-writer",
    }
    for name in ("ServiceDatabaseServiceToken", "ListenerRulePriorityServiceToken"):
        values[name] = boto3.client("lambda", **kwargs).create_function(
            FunctionName=f"test-{name}", Runtime="provided.al2023", Role=role, Handler="bootstrap",
            Code={"ZipFile": buf.getvalue()},
        )["FunctionArn"]
    return values


def export_stack_template(support, fargate, rds, values):
    """A stack that exports every value cfn/service.yaml imports from the three platform stacks."""
    names = {"SupportStackName": support, "FargateClusterStackName": fargate, "RdsClusterStackName": rds}
    found = set(re.findall(r"ImportValue: !Sub \$\{(\w+)\}-(\w+)", SERVICE_TEMPLATE.read_text()))
    outputs = {}
    for i, (param, export) in enumerate(sorted(found)):
        outputs[f"Out{i}"] = {"Value": values[export], "Export": {"Name": f"{names[param]}-{export}"}}
    return json.dumps({
        "Resources": {"Marker": {"Type": "AWS::SSM::Parameter",
                                 "Properties": {"Name": "/test/platform-exports", "Type": "String", "Value": "x"}}},
        "Outputs": outputs,
    })


def service_template_checks(tmp, endpoint, cfn):
    support, fargate, rds = "test-support", "test-fargate", "test-rds"
    cfn.create_stack(StackName="test-platform-exports", TemplateBody=export_stack_template(support, fargate, rds, platform_resources(endpoint)))
    zone = boto3.client("route53", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing").create_hosted_zone(
        Name="example.com", CallerReference="test")["HostedZone"]["Id"].split("/")[-1]
    template_text = SERVICE_TEMPLATE.read_text()
    declared = set((any_tag_yaml(template_text).get("Parameters") or {}).keys())
    variables = {
        **BASE_VARS,
        "fargate_service_hosted_zone_id": zone,
        "fargate_service_desired_count": 3,
        "fargate_service_cpu": "512",
        "fargate_service_memory": "1024",
        "fargate_service_log_retention_days": 90,
        "fargate_service_support_stack": support,
        "fargate_service_fargate_cluster_stack": fargate,
        "fargate_service_rds_cluster_stack": rds,
        "fargate_service_tags": {"team": "checkout", "cost-centre": "4711"},
        "fargate_service_termination_protection": True,
        "fargate_service_wait_timeout": 15,
    }
    expected_all = {
        "ServiceName": "orders", "ContainerImage": BASE_VARS["fargate_service_image"],
        "HostName": "orders.example.com", "HostedZoneId": zone,
        "ContainerPort": "8080", "HealthCheckPath": "/health", "DesiredCount": "3", "Cpu": "512",
        "Memory": "1024", "DatabaseName": "orders", "DatabaseOnDelete": "Retain",
        "DatabasePasswordRotationToken": "",
        "LogRetentionInDays": "90", "SupportStackName": support, "FargateClusterStackName": fargate,
        "RdsClusterStackName": rds, "AdminCredentialSource": "AdminSecret",
    }
    if "MaskedDataIdentifiers" in declared:
        variables["fargate_service_masked_data_identifiers"] = ["EmailAddress", "IpAddress"]
        expected_all["MaskedDataIdentifiers"] = "EmailAddress,IpAddress"
    expected = {k: v for k, v in expected_all.items() if k in declared}

    rc, out = run_role(tmp, endpoint, variables, "service-yaml")
    check("service.yaml: the role fails when the stack does not finish within the wait timeout", rc != 0,
          out[-2000:])
    check("service.yaml: the failure prints the stack's events",
          "Print the stack's last events" in out and "CREATE_IN_PROGRESS" in out
          and "did not reach a complete state" in out, out[-3000:])
    # Which of ansible's two async timeout messages appears depends on whether the async wrapper
    # or the poller notices first; either one is the wait timeout.
    check("service.yaml: the failure is the wait timeout, not an error of the request",
          "Timeout exceeded" in out or "async task did not complete within the requested time" in out,
          out[-1500:])

    stack = cfn.describe_stacks(StackName="service-orders")["Stacks"][0]
    sent = create_stack_requests(tmp / "moto-recording.jsonl", "service-orders")
    # The parameters as sent in the CreateStack request: moto's DescribeStacks re-renders a
    # CommaDelimitedList value as a Python list ("['a', 'b']"), which is not what was sent.
    got = {}
    i = 1
    while sent and f"Parameters.member.{i}.ParameterKey" in sent[0]:
        got[sent[0][f"Parameters.member.{i}.ParameterKey"]] = sent[0].get(f"Parameters.member.{i}.ParameterValue")
        i += 1
    check("service.yaml: the stack is still CREATE_IN_PROGRESS (moto never completes the Custom:: resources)",
          stack["StackStatus"] == "CREATE_IN_PROGRESS", stack["StackStatus"])
    check("service.yaml: stack name is derived from the service (service-orders)", stack["StackName"] == "service-orders")
    check("service.yaml: moto got the parameters the playbook implies, exactly", got == expected,
          {"got": got, "expected": expected})
    check("service.yaml: one CreateStack request was sent", len(sent) == 1, len(sent))
    caps = members(sent[0], "Capabilities") if sent else None
    check("service.yaml: capabilities sent are exactly CAPABILITY_IAM (the template has an IAM role)",
          caps == ["CAPABILITY_IAM"], caps)
    tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
    check("service.yaml: tags are the playbook's plus Service",
          tags == {"Service": "orders", "team": "checkout", "cost-centre": "4711"}, tags)
    check("service.yaml: termination protection is on as requested",
          stack.get("EnableTerminationProtection") is True, stack.get("EnableTerminationProtection"))
    body = cfn.get_template(StackName="service-orders")["TemplateBody"]
    check("service.yaml: moto got exactly the template text of cfn/service.yaml", body == template_text,
          f"{len(body) if isinstance(body, str) else type(body)} vs {len(template_text)} chars")


def simple_template_checks(tmp, endpoint, cfn):
    variables = {
        **BASE_VARS,
        "fargate_service_name": "payments",
        "fargate_service_host_name": "payments.example.com",
        "fargate_service_template": str(SIMPLE_TEMPLATE),
        "fargate_service_tags": {"team": "payments"},
        "fargate_service_wait_timeout": 120,
    }
    rc, out = run_role(tmp, endpoint, variables, "simple-deploy")
    check("completing template: the role succeeds", rc == 0, out[-2000:])
    check("completing template: the outputs are printed",
          "http://payments.example.com/" in out and "/test/payments/image" in out, out[-2000:])
    stack = cfn.describe_stacks(StackName="service-payments")["Stacks"][0]
    got = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    check("completing template: stack is CREATE_COMPLETE", stack["StackStatus"] == "CREATE_COMPLETE", stack["StackStatus"])
    check("completing template: only the parameters it declares were sent",
          got == {"ServiceName": "payments", "ContainerImage": BASE_VARS["fargate_service_image"],
                  "HostName": "payments.example.com", "DesiredCount": "2"}, got)
    sent = create_stack_requests(tmp / "moto-recording.jsonl", "service-payments")
    caps = members(sent[0], "Capabilities") if sent else None
    check("completing template: no capabilities sent (no IAM resource)", caps == [], caps)
    check("completing template: termination protection off by default",
          not stack.get("EnableTerminationProtection"), stack.get("EnableTerminationProtection"))
    body = cfn.get_template(StackName="service-payments")["TemplateBody"]
    check("completing template: moto got exactly its template text", body == SIMPLE_TEMPLATE.read_text())

    rc, out = run_role(tmp, endpoint, {**variables, "fargate_service_delete": True}, "simple-delete")
    check("delete: the role succeeds", rc == 0, out[-2000:])
    live = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    check("delete: the stack is gone", "service-payments" not in live, live)


def engine_exchanges(record, stack):
    """(RequestType, LogicalResourceId, Status) of every custom-resource event of STACK."""
    events, statuses = [], {}
    for line in Path(record).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "event" in entry:
            events.append(entry["event"])
        else:
            statuses[entry["RequestId"]] = (entry["response"] or {}).get("Status")
    return [(e["RequestType"], e["LogicalResourceId"], statuses.get(e["RequestId"])) for e in events
            if f":stack/{stack}/" in e["StackId"]]


def engine_checks(tmp):
    """deploy.yml and delete.yml of the orders example against moto's CloudFormation with the real
    Lambdas answering, after the platform stacks (tests/engine/stacks.py platform)."""
    sys.path.insert(0, str(ENGINE_DIR))
    import throwaway_pg  # pylint: disable=import-outside-toplevel

    bin_dir = Path(os.environ.get("ENGINE_BIN_DIR") or REPO / "target" / "release")
    if not all((bin_dir / f).is_file() for f in ("admin-secret", "service-database", "listener-rule-priority")):
        check("engine: the release Lambdas are built", False, f"none in {bin_dir}: run `make release-bins`")
        return
    os.chmod(tmp, 0o755)  # as root, PostgreSQL runs as the postgres user, which must reach tmp/pg
    pg_env, pg = throwaway_pg.start(tmp / "pg")
    record = tmp / "engine.jsonl"
    port = free_port()
    env = dict(os.environ, **pg_env, ENGINE_BIN_DIR=str(bin_dir), ENGINE_RECORD=str(record),
               ENGINE_LOG_DIR=str(tmp), ENGINE_REGION=ENGINE_REGION)
    with open(tmp / "engine.log", "w", encoding="utf-8") as log:
        engine = subprocess.Popen([str(BIN / "python"), str(ENGINE_DIR / "cfn_engine.py"), "-H", "127.0.0.1",
                                   "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        done = subprocess.run([str(BIN / "python"), str(ENGINE_DIR / "stacks.py"), "platform"],
                              env=aws_env(endpoint, ENGINE_REGION), capture_output=True, text=True, check=False)
        platform = json.loads(done.stdout) if done.returncode == 0 else {"stacks": [], "error": done.stderr}
        statuses = {s["name"]: s["status"] for s in platform["stacks"]}
        check("engine: the support, fargate-cluster and rds-cluster stacks are CREATE_COMPLETE",
              list(statuses.values()) == ["CREATE_COMPLETE"] * 3, platform)
        cfn = boto3.client("cloudformation", region_name=ENGINE_REGION, endpoint_url=endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        # deploy.yml names a hosted zone of a real account; the engine's is example.com's.
        zone = {"fargate_service_hosted_zone_id": (platform.get("network") or {}).get("HostedZoneId", "")}
        examples = ANSIBLE_DIR / "examples" / "orders"
        rc, out = run_role(tmp, endpoint, zone, "engine-deploy", examples / "deploy.yml", ENGINE_REGION)
        check("engine: deploy.yml succeeds", rc == 0, out[-3000:])
        check("engine: deploy.yml prints the stack's outputs",
              "https://orders.example.com/" in out and "/platform/services/orders/database-password" in out,
              out[-2000:])
        stack = cfn.describe_stacks(StackName="service-orders")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
        check("engine: service-orders is CREATE_COMPLETE", stack["StackStatus"] == "CREATE_COMPLETE",
              stack["StackStatus"])
        check("engine: its outputs come from the Lambdas' answers",
              outputs.get("DatabaseName") == "orders" and outputs.get("ListenerRulePriority", "").isdigit(), outputs)
        created = engine_exchanges(record, "service-orders")
        check("engine: both custom resources answered Create with SUCCESS",
              sorted(created) == [("Create", "ListenerRulePriority", "SUCCESS"),
                                  ("Create", "ServiceDatabase", "SUCCESS")], created)
        # deploy.yml turns termination protection on; CloudFormation then refuses the delete until
        # it is turned off, as delete.yml's header says.
        rc, out = run_role(tmp, endpoint, {}, "engine-delete-protected", examples / "delete.yml", ENGINE_REGION)
        check("engine: delete.yml fails while termination protection is on",
              rc != 0 and "TerminationProtection is enabled" in out, out[-2000:])
        cfn.update_termination_protection(StackName="service-orders", EnableTerminationProtection=False)
        rc, out = run_role(tmp, endpoint, {}, "engine-delete", examples / "delete.yml", ENGINE_REGION)
        check("engine: delete.yml succeeds once termination protection is off", rc == 0, out[-3000:])
        live = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
        check("engine: service-orders is gone", "service-orders" not in live, live)
        deleted = [e for e in engine_exchanges(record, "service-orders") if e[0] == "Delete"]
        check("engine: a Delete reached each custom resource, answered SUCCESS",
              sorted(deleted) == [("Delete", "ListenerRulePriority", "SUCCESS"),
                                  ("Delete", "ServiceDatabase", "SUCCESS")], deleted)
    finally:
        engine.terminate()
        engine.wait(timeout=10)
        throwaway_pg.stop(pg, tmp / "pg")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ansible-tests-") as tmpdir:
        tmp = Path(tmpdir)
        bad_input_checks(tmp)
        with open(tmp / "moto.log", "w", encoding="utf-8") as log:
            moto, endpoint = start_moto(free_port(), log, tmp / "moto-recording.jsonl")
            try:
                cfn = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
                simple_template_checks(tmp, endpoint, cfn)
                service_template_checks(tmp, endpoint, cfn)
            finally:
                moto.terminate()
                moto.wait(timeout=10)
        engine_checks(tmp)
        if RESULTS["failed"] and os.environ.get("KEEP_LOGS"):
            subprocess.run(["cp", "-r", str(tmp), "/tmp/ansible-test-logs"], check=False)
    print(f"ansible role tests: {RESULTS['passed']} passed, {RESULTS['failed']} failed "
          f"({time.monotonic() - started:.0f} s)")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
