//! Fixtures in moto that the Lambdas read but never create: KMS keys, an application load
//! balancer with listeners and rules. Made with boto3 from the project venv (the Rust EC2 crate
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
