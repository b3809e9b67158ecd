//! Fixtures in moto that the Lambdas read but never create: KMS keys, an application load
//! balancer with listeners and rules, an RDS-managed master secret; and an SSM parameter's whole
//! history, for assertions. Made with boto3 from the project venv (the Rust EC2 crate
//! takes minutes to compile on two cores).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::services;

const SCRIPT: &str = r#"
import sys, boto3
cmd = sys.argv[1]
if cmd == "kms-key":
    key = boto3.client("kms").create_key(Description=sys.argv[2], KeyUsage="ENCRYPT_DECRYPT")
    print(key["KeyMetadata"]["Arn"])
elif cmd == "kms-alias":
    kms = boto3.client("kms")
    names = [a["AliasName"] for p in kms.get_paginator("list_aliases").paginate() for a in p["Aliases"]]
    if sys.argv[2] not in names:
        key = kms.create_key(Description=sys.argv[2], KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=sys.argv[2], TargetKeyId=key)
    print(kms.describe_key(KeyId=sys.argv[2])["KeyMetadata"]["Arn"])
elif cmd == "kms-aws-key":
    print(boto3.client("kms").describe_key(KeyId=sys.argv[2])["KeyMetadata"]["Arn"])
elif cmd == "kms-key-in-state":
    kms = boto3.client("kms")
    key = kms.create_key(Description=sys.argv[2], KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    if sys.argv[2] == "disabled":
        kms.disable_key(KeyId=key["KeyId"])
    else:
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    print(key["Arn"])
elif cmd == "alb":
    ec2, elb = boto3.client("ec2"), boto3.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.77.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name=sys.argv[2], Subnets=subnets, Type="application", Scheme="internal")
    print(lb["LoadBalancers"][0]["LoadBalancerArn"])
elif cmd == "listener":
    elb = boto3.client("elbv2")
    lb, port = sys.argv[2], int(sys.argv[3])
    priorities = [int(p) for p in sys.argv[4].split(",") if p]
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}]
    arn = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=port, DefaultActions=fixed)["Listeners"][0]["ListenerArn"]
    for p in priorities:
        elb.create_rule(ListenerArn=arn, Priority=p, Actions=fixed,
                        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": [f"/r{p}"]}}])
    print(arn)
"#;

fn run(args: &[&str]) -> String {
    services::moto().python(SCRIPT, args).trim().to_string()
}

/// A new customer-managed KMS key in moto; returns its ARN.
pub fn kms_key(description: &str) -> String {
    let arn = run(&["kms-key", description]);
    assert!(arn.contains(":key/"), "fixture printed {arn:?}");
    arn
}

/// The one application load balancer of this process (creating one takes seconds).
pub fn load_balancer() -> &'static str {
    static ALB: OnceLock<String> = OnceLock::new();
    ALB.get_or_init(|| run(&["alb", &format!("local-{}", std::process::id())]))
}

/// A fresh HTTP listener on [`load_balancer`] with live rules at `priorities`; returns its ARN.
pub fn listener(priorities: impl IntoIterator<Item = u32>) -> String {
    static PORT: AtomicU16 = AtomicU16::new(10_000);
    let port = PORT.fetch_add(1, Ordering::Relaxed).to_string();
    let list: Vec<String> = priorities.into_iter().map(|p| p.to_string()).collect();
    let arn = run(&["listener", load_balancer(), &port, &list.join(",")]);
    assert!(arn.contains(":listener/"), "fixture printed {arn:?}");
    arn
}

/// Makes sure moto has a customer-managed key behind alias `name` (tests name their keys by
/// alias); returns the key's ARN.
pub fn kms_alias(name: &str) -> String {
    static MADE: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if let Some((_, arn)) = made.iter().find(|(n, _)| n == name) {
        return arn.clone();
    }
    let arn = run(&["kms-alias", name]);
    assert!(arn.contains(":key/"), "fixture printed {arn:?}");
    made.push((name.to_string(), arn.clone()));
    arn
}

/// The ARN of the AWS-managed key behind `alias` (`alias/aws/ssm`) in moto.
pub fn kms_aws_managed_key(alias: &str) -> String {
    let arn = run(&["kms-aws-key", alias]);
    assert!(arn.contains(":key/"), "fixture printed {arn:?}");
    arn
}

/// A new key, `"disabled"` or pending deletion (any other `state`); returns its ARN.
pub fn kms_key_in_state(state: &str) -> String {
    let arn = run(&["kms-key-in-state", state]);
    assert!(arn.contains(":key/"), "fixture printed {arn:?}");
    arn
}

/// The Secrets Manager secret RDS makes for a cluster with `ManageMasterUserPassword`: JSON
/// `engine`, `username`, `password`. `create` makes it (returns its ARN); `rotate` puts a new
/// `AWSCURRENT`, the old version becoming `AWSPREVIOUS`, as RDS's rotation does.
pub fn managed_master_secret(action: &str, id: &str, username: &str, password: &str) -> String {
    const SECRET: &str = r#"
import json, sys, boto3
action, secret_id, username, password = sys.argv[1:5]
sm = boto3.client("secretsmanager")
value = json.dumps({"engine": "postgres", "username": username, "password": password})
if action == "create":
    print(sm.create_secret(Name=secret_id, SecretString=value)["ARN"])
else:
    print(sm.put_secret_value(SecretId=secret_id, SecretString=value)["ARN"])
"#;
    services::moto()
        .python(SECRET, &[action, id, username, password])
        .trim()
        .to_string()
}

/// The password at each stage of a managed master secret: (`AWSCURRENT`, `AWSPREVIOUS`).
pub fn managed_master_secret_stages(id: &str) -> (String, String) {
    const STAGES: &str = r#"
import json, sys, boto3
sm = boto3.client("secretsmanager")
stage = lambda s: json.loads(sm.get_secret_value(SecretId=sys.argv[1], VersionStage=s)["SecretString"])["password"]
print(stage("AWSCURRENT"))
print(stage("AWSPREVIOUS"))
"#;
    let out = services::moto().python(STAGES, &[id]);
    let mut lines = out.lines().map(str::to_string);
    (lines.next().unwrap_or_default(), lines.next().unwrap_or_default())
}

/// Each version of an SSM parameter (all pages, decrypted), oldest first.
async fn versions(name: &str) -> Vec<aws_sdk_ssm::types::ParameterHistory> {
    let ssm = services::moto().ssm();
    let mut versions = Vec::new();
    let mut next = None;
    loop {
        let output = ssm
            .get_parameter_history()
            .name(name)
            .with_decryption(true)
            .set_next_token(next)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetParameterHistory {name}: {e:?}"));
        versions.extend(output.parameters().iter().cloned());
        match output.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => break,
        }
    }
    versions.sort_by_key(|p| p.version());
    versions
}

/// Every version of an SSM parameter: (version, value, labels), oldest first.
pub async fn parameter_history(name: &str) -> Vec<(i64, String, Vec<String>)> {
    versions(name)
        .await
        .iter()
        .map(|p| {
            (
                p.version(),
                p.value().unwrap_or_default().to_string(),
                p.labels().to_vec(),
            )
        })
        .collect()
}

/// Every version of an SSM parameter: (value, description), oldest first.
pub async fn parameter_descriptions(name: &str) -> Vec<(String, String)> {
    versions(name)
        .await
        .iter()
        .map(|p| {
            (
                p.value().unwrap_or_default().to_string(),
                p.description().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
