//! The cluster variant whose master password RDS manages (`AdminCredentialSource: RdsManaged`):
//! a Secrets Manager secret `rds!cluster-...` holding JSON `username`/`password`, rotated by RDS.
//! Service databases are made against it before, during and after a rotation.

use std::collections::BTreeMap;

use local_invoke::postgres::Postgres;
use local_invoke::services::Moto;
use local_invoke::{Harness, fixtures};
use serde_json::{Value, json};

use super::{Report, answered, properties, read_secret, scram_literal};

const MANAGED_STACK: &str = "platform-rds-cluster-managed";

/// A password as RDS would make one (the demo's own: the Lambdas never see it in clear except
/// through the secret).
fn password() -> String {
    format!("Rds-Managed-{}", local_invoke::postgres::random_hex(16))
}

/// Plays the scene; every password it makes or reads goes to the report's closing leak check.
/// Returns the scene's Lambda logs, for the same check.
pub(super) async fn scene(
    report: &mut Report,
    moto: &Moto,
    pg: &Postgres,
    env: &[(&str, &str)],
    service_locals: &BTreeMap<String, String>,
) -> String {
    report.say("");
    report.say(format!(
        "Stack {MANAGED_STACK} (cfn/rds-cluster.yaml, AdminCredentialSource RdsManaged): the master password \
         lives in an RDS-managed Secrets Manager secret"
    ));
    let (first, second) = (password(), password());
    report.secret("the managed secret's first password", Some(first.clone()));
    report.secret("the managed secret's rotated password", Some(second.clone()));
    // A master user of its own, so the first cluster's keeps its password.
    let master = "platform_managed_admin";
    let made = pg
        .admin("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {master} LOGIN CREATEDB CREATEROLE PASSWORD {}",
            scram_literal(&first)
        ))
        .await;
    let secret_id = "rds!cluster-demo-managed";
    let arn = fixtures::managed_master_secret("create", secret_id, master, &first);
    report.check(
        made.is_ok() && arn.starts_with("arn:aws:secretsmanager:"),
        format!(
            "as RDS would: master user {master} and secret {secret_id} (JSON username/password, AWSCURRENT) hold the same password"
        ),
    );

    let mut locals = service_locals.clone();
    locals.insert(
        format!("Fn::ImportValue {MANAGED_STACK}-AdminCredential"),
        arn.clone(),
    );
    for key in ["Host", "Port"] {
        let value = locals
            .get(&format!("Fn::ImportValue platform-rds-cluster-{key}"))
            .cloned()
            .expect("the first cluster's host and port");
        locals.insert(format!("Fn::ImportValue {MANAGED_STACK}-{key}"), value);
    }
    let lambda = Harness::start_profile("service-database", crate::LAMBDAS, env).await;
    let scene = Scene {
        lambda: &lambda,
        moto,
        pg,
        arn: &arn,
        locals: &locals,
    };
    let mut made = vec![scene.create(report, "inventory", "with AWSCURRENT").await];

    // RDS rotates: the secret moves first; the cluster takes the new password a little later.
    fixtures::managed_master_secret("rotate", secret_id, master, &second);
    let (current, previous) = fixtures::managed_master_secret_stages(secret_id);
    report.check(
        current == second && previous == first,
        "RDS rotates the secret: AWSCURRENT holds the new password, AWSPREVIOUS the old one, which the cluster still has",
    );
    let before = lambda.logs().len();
    made.push(
        scene
            .create(
                report,
                "shipping",
                "during the rotation, the cluster still on the old password",
            )
            .await,
    );
    report.check(
        lambda.logs()[before..].contains("logged in with an earlier admin credential"),
        "the Lambda read AWSCURRENT, was refused, read it again and logged in with AWSPREVIOUS",
    );
    let applied = pg
        .admin("postgres")
        .await
        .batch_execute(&format!(
            "ALTER ROLE {master} PASSWORD {}",
            scram_literal(&second)
        ))
        .await;
    report.check(
        applied.is_ok()
            && pg.connect(master, &second, "postgres").await.is_ok()
            && pg.connect(master, &first, "postgres").await.is_err(),
        format!("RDS applies the rotation: {master} logs in with AWSCURRENT, no longer with AWSPREVIOUS"),
    );

    // The two service stacks deleted (DatabaseOnDelete Drop): the Lambda logs in with AWSCURRENT.
    for (stack, id, props) in made.into_iter().rev() {
        let event =
            lambda
                .events
                .for_stack(&stack)
                .delete("Custom::ServiceDatabase", "ServiceDatabase", &id, props);
        let x = lambda.call(event.clone()).await;
        report.record(&stack, "ServiceDatabase", &event, &x);
        report.check(
            answered(&x, "/Status") == "SUCCESS",
            format!("{stack} deleted (OnDelete Drop)"),
        );
    }
    lambda.logs()
}

/// What each service Create of the scene needs.
struct Scene<'a> {
    lambda: &'a Harness,
    moto: &'a Moto,
    pg: &'a Postgres,
    arn: &'a str,
    locals: &'a BTreeMap<String, String>,
}

impl Scene<'_> {
    /// The service stack's `Custom::ServiceDatabase` for `service` on the managed cluster.
    fn props(&self, service: &str) -> Value {
        let mut p = properties(
            "service.yaml",
            "ServiceDatabase",
            &format!("platform-service-{service}"),
            &[
                ("ServiceName", service),
                ("DatabaseName", service),
                ("DatabaseOnDelete", "Drop"),
                ("RdsClusterStackName", MANAGED_STACK),
                ("AdminCredentialSource", "RdsManaged"),
            ],
            self.locals,
        );
        p["CaCertificate"] = json!(self.pg.ca_pem);
        p
    }

    /// Creates `service`'s database and checks it connects; returns (stack, physical id, props).
    async fn create(&self, report: &mut Report, service: &str, when: &str) -> (String, String, Value) {
        let props = self.props(service);
        let stack = format!("platform-service-{service}");
        let event = self.lambda.events.for_stack(&stack).create(
            "Custom::ServiceDatabase",
            "ServiceDatabase",
            props.clone(),
        );
        let x = self.lambda.call(event.clone()).await;
        report.record(&stack, "ServiceDatabase", &event, &x);
        let user = answered(&x, "/Data/Username");
        let parameter = answered(&x, "/Data/PasswordParameterName");
        let password = report.secret(&parameter, read_secret(&self.moto.ssm(), &parameter).await);
        let logs_in = self.pg.connect(&user, &password, service).await.is_ok();
        report.check(
            props.get("AdminSecretArn").and_then(Value::as_str) == Some(self.arn)
                && props.get("AdminUsername").is_none()
                && answered(&x, "/Status") == "SUCCESS"
                && logs_in,
            format!(
                "{service} (AdminSecretArn from the template's RdsManaged branch), made {when}: role {user} connects with the password from {parameter}"
            ),
        );
        (stack, answered(&x, "/PhysicalResourceId"), props)
    }
}
