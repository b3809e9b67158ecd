//! `Custom::ListenerRulePriority` against moto: the real `listener-rule-priority` binary, an ALB
//! with one listener per test (rules at chosen priorities), claims checked in SSM.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use local_invoke::fixtures::listener;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use local_invoke::{Exchange, Harness, services};
use serde_json::{Value, json};

const BINARY: &str = "listener-rule-priority";
const RESOURCE_TYPE: &str = "Custom::ListenerRulePriority";
/// Where the handler documents its claims: `<root>/<listener ARN after "listener/">/<priority>`.
const CLAIM_ROOT: &str = "/custom-resource/listener-rule-priority";

pub(crate) fn trials() -> Vec<Trial> {
    let mut all = trials![
        listener_priority::faults;
        a_sequence_at_25_percent_injected_aws_faults,
        killed_after_each_aws_call_then_redelivered,
    ];
    all.extend(trials![
        listener_priority;
        an_update_changing_only_service_token_or_timeout_writes_nothing,
        empty_listener_gets_the_range_minimum,
        rules_at_1_2_5_give_6,
        claims_live_under_priority_claim_path,
        with_50000_taken_the_lowest_gap_is_returned,
        a_full_range_fails_clearly_and_keeps_no_claims,
        every_describe_rules_page_is_seen,
        contention_64_concurrent_creates_get_distinct_priorities,
        a_retried_create_returns_the_same_priority,
        update_keeps_or_replaces_and_delete_of_the_old_id_releases,
        delete_frees_only_our_claim_and_it_can_be_reused,
        count_3_returns_three_distinct_priorities,
        invalid_properties_fail_naming_the_property,
        a_duplicate_create_in_flight_at_once_ends_with_one_claim,
        with_100_claims_a_create_makes_a_bounded_number_of_aws_calls,
        when_probing_up_runs_out_the_lowest_unclaimed_gap_is_returned,
        a_stale_claim_is_reclaimed_only_when_the_range_is_full,
        delete_lowers_the_hint,
        a_claim_of_a_delete_complete_stack_is_reclaimed_when_full,
        concurrent_reclaims_of_one_stale_claim_have_one_winner,
    ]);
    all
}

// ---------------------------------------------------------------------------------------------
// Fixtures

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(cfn_custom_resource::https_client())
        .endpoint_url(&services::moto().endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

/// The claims on a listener as moto holds them: priority → value.
async fn claims(listener: &str) -> BTreeMap<u32, String> {
    claims_under(CLAIM_ROOT, listener).await
}

/// Every SSM parameter below `path` (all pages, recursively), as (name, version, value).
async fn parameters_under(path: &str) -> Vec<(String, i64, String)> {
    let ssm = services::moto().ssm();
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .set_next_token(token)
            .send()
            .await
            .expect("GetParametersByPath");
        out.extend(page.parameters().iter().map(|p| {
            (
                p.name().unwrap_or_default().to_string(),
                p.version(),
                p.value().unwrap_or_default().to_string(),
            )
        }));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

/// The claims on a listener under a given claim root.
async fn claims_under(root: &str, listener: &str) -> BTreeMap<u32, String> {
    let id = listener.split_once(":listener/").expect("listener arn").1;
    let path = format!("{root}/{id}");
    parameters_under(&path)
        .await
        .into_iter()
        .map(|(name, _, value)| {
            let priority = name
                .strip_prefix(&format!("{path}/"))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("unexpected parameter {name} under {path}"));
            (priority, value)
        })
        .collect()
}

/// The numeric priorities of the live rules on a listener.
async fn rule_priorities(listener: &str) -> BTreeSet<u32> {
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&sdk_config().await);
    let mut out = BTreeSet::new();
    let mut marker = None;
    loop {
        let page = elbv2
            .describe_rules()
            .listener_arn(listener)
            .page_size(400)
            .set_marker(marker)
            .send()
            .await
            .expect("DescribeRules");
        out.extend(
            page.rules()
                .iter()
                .filter_map(|r| r.priority()?.parse::<u32>().ok()),
        );
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            return out;
        }
    }
}

async fn start() -> Harness {
    Harness::start(BINARY, &services::moto().env()).await
}

fn owner(harness: &Harness, logical_id: &str) -> String {
    format!("{}|{logical_id}", harness.events.stack_id)
}

fn priority(exchange: &Exchange) -> u32 {
    exchange
        .data("Priority")
        .unwrap_or_else(|| panic!("no Data.Priority in {:#?}", exchange.response()))
        .parse()
        .expect("Priority is a number")
}

async fn create(harness: &Harness, logical_id: &str, properties: Value) -> Exchange {
    let exchange = harness
        .call(harness.events.create(RESOURCE_TYPE, logical_id, properties))
        .await;
    harness.assert_success(&exchange);
    exchange
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn empty_listener_gets_the_range_minimum() {
    let arn = listener([]);
    let harness = start().await;
    // Strings, as CloudFormation sends them.
    let got = create(
        &harness,
        "Priority",
        json!({"ListenerArn": arn, "MinPriority": "10", "MaxPriority": "20"}),
    )
    .await;
    assert_eq!(priority(&got), 10);
    assert_eq!(got.physical_id(), Some(format!("{arn}/priority/10").as_str()));
    assert_eq!(got.data("Priorities"), None, "Priorities only when Count > 1");
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(10, owner(&harness, "Priority"))])
    );

    // The defaults: 1..=50000.
    let got = create(&harness, "Other", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&got), 11, "one above the highest claim");
}

/// The deployed function keeps its claims under the support stack's PriorityClaimPath, the one
/// path its IAM role may write.
async fn claims_live_under_priority_claim_path() {
    let arn = listener([1, 2, 5]);
    let root = "/platform/test-claims";
    let env = [
        ("AWS_ENDPOINT_URL", services::moto().endpoint.as_str()),
        ("PRIORITY_CLAIM_PATH", root),
    ];
    let harness = Harness::start(BINARY, &env).await;
    let got = create(&harness, "Priority", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&got), 6);
    assert_eq!(
        claims_under(root, &arn).await,
        BTreeMap::from([(6, owner(&harness, "Priority"))])
    );
    assert!(claims(&arn).await.is_empty(), "nothing under the default root");
}

async fn rules_at_1_2_5_give_6() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let got = create(&harness, "Priority", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&got), 6);
    assert_eq!(got.physical_id(), Some(format!("{arn}/priority/6").as_str()));
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, owner(&harness, "Priority"))])
    );
    assert_eq!(
        rule_priorities(&arn).await,
        BTreeSet::from([1, 2, 5]),
        "rules are never touched"
    );
}

async fn with_50000_taken_the_lowest_gap_is_returned() {
    let arn = listener([1, 2, 3, 50_000]);
    let harness = start().await;
    let got = create(&harness, "Priority", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&got), 4);
    let next = create(&harness, "Next", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&next), 5);
    assert_eq!(claims(&arn).await.keys().copied().collect::<Vec<_>>(), [4, 5]);
}

async fn a_full_range_fails_clearly_and_keeps_no_claims() {
    let arn = listener([10, 11]);
    let harness = start().await;
    let range = json!({"ListenerArn": arn, "MinPriority": "10", "MaxPriority": "12"});
    let first = create(&harness, "First", range.clone()).await;
    assert_eq!(priority(&first), 12);

    let full = harness
        .call(harness.events.create(RESOURCE_TYPE, "Second", range))
        .await;
    assert_eq!(full.status(), Some("FAILED"), "{:#?}", full.response());
    let reason = full.reason().expect("a Reason");
    assert!(reason.contains("no free listener-rule priority"), "{reason}");
    assert!(
        reason.contains(&arn) && reason.contains("10..=12"),
        "names the listener and range: {reason}"
    );
    assert!(
        full.physical_id()
            .is_some_and(|id| id.starts_with("create-failed:")),
        "{:?}",
        full.physical_id()
    );
    assert!(!full.outcome.is_error(), "delivered, so the runtime hears Ok");

    // Two free (13, 14) but three wanted: fails, and the two it claimed are released again.
    let short = harness
        .call(harness.events.create(
            RESOURCE_TYPE,
            "Third",
            json!({"ListenerArn": arn, "MinPriority": 10, "MaxPriority": 14, "Count": 3}),
        ))
        .await;
    assert_eq!(short.status(), Some("FAILED"), "{:#?}", short.response());
    assert!(
        short.reason().is_some_and(|r| r.contains("needed 3, found 2"))
            && short.reason().is_some_and(|r| r.contains("10..=14")),
        "{:?}",
        short.reason()
    );
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(12, owner(&harness, "First"))])
    );
}

async fn every_describe_rules_page_is_seen() {
    // 450 rules: two pages at the handler's page size of 400. Reading only the first page would
    // hand out 401, which a live rule holds.
    let arn = listener(1..=450);
    assert_eq!(rule_priorities(&arn).await.len(), 450);
    let harness = start().await;
    let got = create(&harness, "Priority", json!({"ListenerArn": arn})).await;
    assert_eq!(priority(&got), 451);
    assert_eq!(claims(&arn).await.keys().copied().collect::<Vec<_>>(), [451]);
}

async fn contention_64_concurrent_creates_get_distinct_priorities() {
    const N: usize = 64;
    let arn = listener(1..=500);
    let rules = rule_priorities(&arn).await;
    assert_eq!(rules.len(), 500);

    // One Lambda process per request, all polling before anything is sent.
    let mut harnesses = Vec::with_capacity(N);
    for _ in 0..N {
        let mut harness = start().await;
        harness.timeout = Duration::from_secs(120);
        harnesses.push(Arc::new(harness));
    }
    for h in &harnesses {
        assert!(
            h.runtime_api.wait_for_polls(1, Duration::from_secs(60)).await,
            "logs:\n{}",
            h.logs()
        );
    }
    // Each request from its own stack and logical id, as 64 service stacks deploying at once.
    let events: Vec<Value> = (0..N)
        .map(|i| {
            let h = &harnesses[i];
            h.events.create(
                RESOURCE_TYPE,
                &format!("Service{i}Priority"),
                json!({"ListenerArn": arn}),
            )
        })
        .collect();

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, event) in events.into_iter().enumerate() {
        let h = Arc::clone(&harnesses[i]);
        set.spawn(async move { (i, h.call(event).await) });
    }
    let mut got: BTreeMap<u32, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, exchange) = joined.expect("call task");
        if exchange.status() == Some("SUCCESS") {
            if let Some(previous) = got.insert(priority(&exchange), i) {
                failures.push(format!(
                    "requests {previous} and {i} both got {}",
                    priority(&exchange)
                ));
            }
        } else {
            failures.push(format!(
                "request {i}: {:?} (logs: {})",
                exchange.reason(),
                harnesses[i].logs()
            ));
        }
    }
    let wall = started.elapsed();
    // How many claim attempts went to a concurrent request first (the handlers log `lost=N`).
    let collisions: usize = harnesses
        .iter()
        .flat_map(|h| {
            let logs = h.logs();
            let counts: Vec<usize> = logs
                .split("lost=")
                .skip(1)
                .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .collect();
            counts
        })
        .sum();
    eprintln!(
        "contention: {} distinct of {N} in {} ms ({collisions} claim attempts lost to a concurrent request)",
        got.len(),
        wall.as_millis()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(got.len(), N);
    let clashing: Vec<u32> = got.keys().filter(|p| rules.contains(p)).copied().collect();
    assert!(
        clashing.is_empty(),
        "handed out priorities live rules hold: {clashing:?}"
    );

    // Every priority handed out is claimed in SSM by exactly the request that got it.
    let held = claims(&arn).await;
    assert_eq!(held.len(), N, "one claim per request, no leftovers: {held:?}");
    for (p, i) in &got {
        assert_eq!(
            held.get(p),
            Some(&owner(&harnesses[*i], &format!("Service{i}Priority"))),
            "claim {p}"
        );
    }
}

async fn a_retried_create_returns_the_same_priority() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let properties = json!({"ListenerArn": arn});
    let first = create(&harness, "Priority", properties.clone()).await;
    // Someone else claims the next one meanwhile.
    let other = create(&harness, "Other", properties.clone()).await;
    assert_eq!((priority(&first), priority(&other)), (6, 7));

    // The same Create again (a retry: same stack, same logical id, new request).
    let again = create(&harness, "Priority", properties.clone()).await;
    assert_eq!(
        again.physical_id(),
        Some(first.physical_id().expect("a physical id"))
    );
    assert_eq!(priority(&again), 6);

    // The very same event delivered twice (Lambda's at-least-once), the second time to another
    // process; its ResponseURL is pointed at that process's receiver to record both answers.
    let event = harness.events.create(RESOURCE_TYPE, "Priority", properties);
    let once = harness.call(event.clone()).await;
    harness.assert_success(&once);
    let twice = start().await;
    let mut duplicate = local_invoke::EventBuilder::retry(&event);
    duplicate["ResponseURL"] = json!(twice.receiver.response_url(event["RequestId"].as_str().unwrap()));
    let second = twice.call(duplicate).await;
    twice.assert_success(&second);
    assert_eq!((priority(&once), priority(&second)), (6, 6));
    assert_eq!(
        second.physical_id(),
        Some(first.physical_id().expect("a physical id"))
    );

    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, owner(&harness, "Priority")), (7, owner(&harness, "Other"))])
    );
}

async fn update_keeps_or_replaces_and_delete_of_the_old_id_releases() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let properties = json!({"ListenerArn": arn});
    let created = create(&harness, "Priority", properties.clone()).await;
    let id = created.physical_id().expect("a physical id").to_string();
    assert_eq!(priority(&created), 6);

    // Same properties, and a wider range that still holds 6: kept.
    for new in [
        properties.clone(),
        json!({"ListenerArn": arn, "MinPriority": "2", "MaxPriority": "100"}),
    ] {
        let updated = harness
            .call(
                harness
                    .events
                    .update(RESOURCE_TYPE, "Priority", &id, new.clone(), properties.clone()),
            )
            .await;
        harness.assert_success(&updated);
        assert_eq!(updated.physical_id(), Some(id.as_str()), "kept for {new}");
        assert_eq!(priority(&updated), 6);
    }
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, owner(&harness, "Priority"))])
    );

    // Count 2: replaced by two new claims; the old one stays until CloudFormation deletes it.
    let two = json!({"ListenerArn": arn, "Count": "2"});
    let replaced = harness
        .call(
            harness
                .events
                .update(RESOURCE_TYPE, "Priority", &id, two.clone(), properties.clone()),
        )
        .await;
    harness.assert_success(&replaced);
    assert_eq!(
        replaced.physical_id(),
        Some(format!("{arn}/priority/7,8").as_str())
    );
    assert_eq!(replaced.data("Priorities"), Some("7,8"));
    assert_eq!(priority(&replaced), 7);
    assert_eq!(claims(&arn).await.keys().copied().collect::<Vec<_>>(), [6, 7, 8]);

    // The cleanup Delete of the old id releases only 6.
    let deleted = harness
        .call(harness.events.delete(RESOURCE_TYPE, "Priority", &id, properties))
        .await;
    harness.assert_success(&deleted);
    assert_eq!(deleted.physical_id(), Some(id.as_str()));
    let mine = owner(&harness, "Priority");
    assert_eq!(claims(&arn).await, BTreeMap::from([(7, mine.clone()), (8, mine)]));
}

async fn delete_frees_only_our_claim_and_it_can_be_reused() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let properties = json!({"ListenerArn": arn});
    let created = create(&harness, "Priority", properties.clone()).await;
    let id = created.physical_id().expect("a physical id").to_string();
    assert_eq!(priority(&created), 6);

    // A Delete from another resource naming our id releases nothing.
    let foreign = harness
        .call(
            harness
                .events
                .delete(RESOURCE_TYPE, "Intruder", &id, properties.clone()),
        )
        .await;
    harness.assert_success(&foreign);
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, owner(&harness, "Priority"))])
    );

    let deleted = harness
        .call(
            harness
                .events
                .delete(RESOURCE_TYPE, "Priority", &id, properties.clone()),
        )
        .await;
    harness.assert_success(&deleted);
    assert_eq!(deleted.physical_id(), Some(id.as_str()));
    assert!(claims(&arn).await.is_empty());

    // Already released: still SUCCESS.
    let again = harness
        .call(
            harness
                .events
                .delete(RESOURCE_TYPE, "Priority", &id, properties.clone()),
        )
        .await;
    harness.assert_success(&again);

    // The freed priority is handed out again.
    let reused = create(&harness, "Successor", properties).await;
    assert_eq!(priority(&reused), 6);
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, owner(&harness, "Successor"))])
    );
}

async fn count_3_returns_three_distinct_priorities() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let got = create(&harness, "Priorities", json!({"ListenerArn": arn, "Count": "3"})).await;
    assert_eq!(got.data("Priorities"), Some("6,7,8"));
    assert_eq!(priority(&got), 6);
    assert_eq!(got.physical_id(), Some(format!("{arn}/priority/6,7,8").as_str()));
    let mine = owner(&harness, "Priorities");
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(6, mine.clone()), (7, mine.clone()), (8, mine)])
    );
}

async fn invalid_properties_fail_naming_the_property() {
    let harness = start().await;
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/none/0/0";
    for (properties, property) in [
        (json!({"ListenerArn": arn, "Count": "0"}), "`Count`"),
        (
            json!({"ListenerArn": arn, "MinPriority": "50", "MaxPriority": "40"}),
            "`MaxPriority`",
        ),
        (
            json!({"ListenerArn": arn, "MaxPriority": "50001"}),
            "`MaxPriority`",
        ),
        (json!({"ListenerArn": "my-listener"}), "`ListenerArn`"),
        (json!({"ListenerArn": arn, "Count": "many"}), "`Count`"),
        (json!({"ListenerArn": arn, "Priority": "3"}), "`Priority`"),
    ] {
        let got = harness
            .call(harness.events.create(RESOURCE_TYPE, "Bad", properties.clone()))
            .await;
        assert_eq!(got.status(), Some("FAILED"), "{properties}");
        assert!(
            got.reason().is_some_and(|r| r.contains(property)),
            "{properties}: {:?}",
            got.reason()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicates, the hint, the fallback and stale claims

/// The listener's hint as the handler leaves it (`<root>/_state/<listener id>/hint`).
fn hint_name(listener: &str) -> String {
    let id = listener.split_once(":listener/").expect("listener arn").1;
    format!("{CLAIM_ROOT}/_state/{id}/hint")
}

async fn hint(listener: &str) -> Option<u32> {
    let ssm = services::moto().ssm();
    match ssm.get_parameter().name(hint_name(listener)).send().await {
        Ok(out) => out.parameter()?.value()?.parse().ok(),
        Err(_) => None,
    }
}

/// Writes a claim as another resource would have (or an earlier version of the handler did).
async fn put_claim(listener: &str, priority: u32, value: &str) {
    let id = listener.split_once(":listener/").expect("listener arn").1;
    services::moto()
        .ssm()
        .put_parameter()
        .name(format!("{CLAIM_ROOT}/{id}/{priority}"))
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(false)
        .send()
        .await
        .expect("PutParameter claim");
}

async fn a_duplicate_create_in_flight_at_once_ends_with_one_claim() {
    let arn = listener([1, 2, 5]);
    let (first, second) = tokio::join!(start(), start());
    for h in [&first, &second] {
        assert!(
            h.runtime_api.wait_for_polls(1, Duration::from_secs(60)).await,
            "logs:\n{}",
            h.logs()
        );
    }
    // The very same event (same RequestId) delivered twice at once, to two processes; the second
    // copy answers to the second process's receiver so both answers are recorded.
    let event = first
        .events
        .create(RESOURCE_TYPE, "Priority", json!({"ListenerArn": arn}));
    let mut duplicate = local_invoke::EventBuilder::retry(&event);
    duplicate["ResponseURL"] = json!(second.receiver.response_url(event["RequestId"].as_str().unwrap()));
    let (a, b) = tokio::join!(first.call(event), second.call(duplicate));
    first.assert_success(&a);
    second.assert_success(&b);
    assert_eq!(
        (priority(&a), a.physical_id().expect("a physical id")),
        (priority(&b), b.physical_id().expect("a physical id")),
        "both deliveries answer the same priority\nfirst:\n{}\nsecond:\n{}",
        first.logs(),
        second.logs()
    );
    assert_eq!(
        claims(&arn).await,
        BTreeMap::from([(priority(&a), owner(&first, "Priority"))]),
        "one claim is left\nfirst:\n{}\nsecond:\n{}",
        first.logs(),
        second.logs()
    );
}

async fn with_100_claims_a_create_makes_a_bounded_number_of_aws_calls() {
    let arn = listener([1, 2, 5]);
    for p in 6..=105 {
        put_claim(
            &arn,
            p,
            &format!("arn:aws:cloudformation:us-east-1:123456789012:stack/s{p}/x|P"),
        )
        .await;
    }
    // Claims written without a hint (an earlier version): probing up still finds room quickly.
    let harness = start().await;
    let got = create(&harness, "Priority", json!({"ListenerArn": arn})).await;
    let p = priority(&got);
    let calls = local_invoke::last_aws_calls(&harness.logs());
    eprintln!("100 claims, no hint: priority {p} in {calls} AWS calls");
    assert!(p > 105, "{p} is claimed by someone else");
    assert!(
        calls <= 21,
        "{calls} AWS calls for one Create:\n{}",
        harness.logs()
    );
    assert_eq!(hint(&arn).await, Some(p), "the hint follows the claim");

    // With the hint the handler left: DescribeRules (one page), GetParameters, the claim, the
    // reservation and the hint.
    let next = create(&harness, "Next", json!({"ListenerArn": arn})).await;
    let calls = local_invoke::last_aws_calls(&harness.logs());
    eprintln!(
        "100 claims, with the hint: priority {} in {calls} AWS calls",
        priority(&next)
    );
    assert_eq!(priority(&next), p + 1);
    assert_eq!(calls, 5, "AWS calls for one Create:\n{}", harness.logs());
    assert_eq!(claims(&arn).await.len(), 102);
    // Its reads run together (DescribeRules beside GetParameters, the reservation beside the
    // hint): the time logged as waiting on AWS counts them once, within the handler's own time.
    let logs = harness.logs();
    let last = |key| *local_invoke::delivered_field(&logs, key).last().expect(key);
    let (aws_us, handler_us) = (last("aws_us"), last("handler_us"));
    assert!(
        0 < aws_us && aws_us <= handler_us,
        "aws_us={aws_us} handler_us={handler_us}:\n{logs}"
    );
}

async fn when_probing_up_runs_out_the_lowest_unclaimed_gap_is_returned() {
    let arn = listener([10]);
    for p in [11, 13, 14, 15] {
        put_claim(
            &arn,
            p,
            "arn:aws:cloudformation:us-east-1:123456789012:stack/other/x|P",
        )
        .await;
    }
    let harness = start().await;
    let properties = json!({"ListenerArn": arn, "MinPriority": 10, "MaxPriority": 15});
    // Nothing is free above 15 in the range: the listing finds 12.
    let got = create(&harness, "Priority", properties.clone()).await;
    assert_eq!(priority(&got), 12);
    // And now the range is full.
    let full = harness
        .call(harness.events.create(RESOURCE_TYPE, "Full", properties))
        .await;
    assert_eq!(full.status(), Some("FAILED"), "{:#?}", full.response());
    assert!(
        full.reason()
            .is_some_and(|r| r.contains("no free listener-rule priority")),
        "{:?}",
        full.reason()
    );
}

async fn a_stale_claim_is_reclaimed_only_when_the_range_is_full() {
    // A stack that is gone left a claim on 11 (no rule there) and one on 10 (a rule still holds
    // 10, so it is never reclaimed); a younger-than-the-age claim on 13 has no rule either.
    let arn = listener([10]);
    let gone = "arn:aws:cloudformation:us-east-1:123456789012:stack/gone/x|P";
    put_claim(&arn, 10, gone).await;
    put_claim(&arn, 11, gone).await;
    put_claim(
        &arn,
        12,
        "arn:aws:cloudformation:us-east-1:123456789012:stack/live/x|P",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    put_claim(
        &arn,
        13,
        "arn:aws:cloudformation:us-east-1:123456789012:stack/young/x|P",
    )
    .await;
    let mut env = services::moto().env();
    env.push(("PRIORITY_RECLAIM_AGE_SECONDS", "2"));
    let harness = Harness::start(BINARY, &env).await;

    // Room in the range: nothing is reclaimed.
    let roomy = create(
        &harness,
        "Roomy",
        json!({"ListenerArn": arn, "MinPriority": 10, "MaxPriority": 14}),
    )
    .await;
    assert_eq!(priority(&roomy), 14);
    assert_eq!(claims(&arn).await.get(&11).map(String::as_str), Some(gone));

    // Full range: the lowest stale claim without a rule is reclaimed.
    let got = create(
        &harness,
        "Priority",
        json!({"ListenerArn": arn, "MinPriority": 10, "MaxPriority": 14}),
    )
    .await;
    assert_eq!(priority(&got), 11, "logs:\n{}", harness.logs());
    let held = claims(&arn).await;
    assert_eq!(held.get(&10).map(String::as_str), Some(gone), "a rule holds 10");
    assert_eq!(held.get(&11), Some(&owner(&harness, "Priority")));
    assert!(held.contains_key(&13), "the young claim stays");
}

async fn delete_lowers_the_hint() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let properties = json!({"ListenerArn": arn});
    let a = create(&harness, "A", properties.clone()).await;
    let b = create(&harness, "B", properties.clone()).await;
    assert_eq!((priority(&a), priority(&b)), (6, 7));
    assert_eq!(hint(&arn).await, Some(7));

    // Deleting the top one lowers the hint; deleting one below it does not.
    let deleted = harness
        .call(harness.events.delete(
            RESOURCE_TYPE,
            "B",
            b.physical_id().expect("a physical id"),
            properties.clone(),
        ))
        .await;
    harness.assert_success(&deleted);
    assert_eq!(hint(&arn).await, Some(6));
    let c = create(&harness, "C", properties.clone()).await;
    assert_eq!(priority(&c), 7, "the freed top priority is handed out again");
    let deleted = harness
        .call(harness.events.delete(
            RESOURCE_TYPE,
            "A",
            a.physical_id().expect("a physical id"),
            properties.clone(),
        ))
        .await;
    harness.assert_success(&deleted);
    assert_eq!(hint(&arn).await, Some(7));
}

/// Creates a stack in moto and deletes it; returns its stack id (moto's DescribeStacks by that
/// id then answers DELETE_COMPLETE, as CloudFormation does).
fn deleted_stack() -> String {
    const SCRIPT: &str = r#"
import boto3, json, sys
cfn = boto3.client("cloudformation", region_name="us-east-1")
body = json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})
stack_id = cfn.create_stack(StackName=sys.argv[1], TemplateBody=body)["StackId"]
cfn.delete_stack(StackName=stack_id)
print(stack_id)
"#;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "gone-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    services::moto().python(SCRIPT, &[&name]).trim().to_string()
}

async fn a_claim_of_a_delete_complete_stack_is_reclaimed_when_full() {
    // 10 and 12: claims of a deleted stack; a rule holds 10. 11: a claim of a live stack (the
    // test's own stack id is unknown to moto: "unsure", so it stays). All written just now, far
    // younger than the default reclaim age.
    let arn = listener([10]);
    let gone = format!("{}|P", deleted_stack());
    put_claim(&arn, 10, &gone).await;
    put_claim(
        &arn,
        11,
        "arn:aws:cloudformation:us-east-1:123456789012:stack/unknown/x|P",
    )
    .await;
    put_claim(&arn, 12, &gone).await;
    let harness = start().await;
    let got = create(
        &harness,
        "Priority",
        json!({"ListenerArn": arn, "MinPriority": 10, "MaxPriority": 12}),
    )
    .await;
    assert_eq!(priority(&got), 12, "logs:\n{}", harness.logs());
    let held = claims(&arn).await;
    assert_eq!(held.get(&10), Some(&gone), "a rule holds 10");
    assert!(
        held.contains_key(&11),
        "a stack that is not known to be deleted keeps its claim"
    );
    assert_eq!(held.get(&12), Some(&owner(&harness, "Priority")));
}

/// Reclaim is a compare-and-swap on the claim's version: of requests taking over the same stale
/// claim (read at the same version), exactly one wins and the claim ends naming it, whether they
/// run at once, one after the other, or after the claim was deleted and created afresh.
async fn concurrent_reclaims_of_one_stale_claim_have_one_winner() {
    use listener_rule_priority::{Claim, Claimed, ListenerClaims, Owner};

    let arn = format!(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/reclaim-{}/1/2",
        std::process::id()
    );
    let ssm = services::moto().ssm();
    let claims = ListenerClaims::new(&arn);
    const STALE: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/gone/x|P";
    let owners: Vec<Owner> = (0..3)
        .map(|i| {
            Owner::new(
                format!("arn:aws:cloudformation:us-east-1:123456789012:stack/s{i}/x"),
                "P",
            )
        })
        .collect();
    let read = |priority: u32| {
        let (ssm, claims) = (ssm.clone(), claims.clone());
        async move {
            let claim: Claim = claims.read_with_age(&ssm).await.expect("read")[&priority].clone();
            assert_eq!(claim.owner.to_string(), STALE);
            claim
        }
    };

    // At once, three reclaimers, several times (moto interleaves the requests differently).
    for priority in 1..=8u32 {
        put_claim(&arn, priority, STALE).await;
        let stale = read(priority).await;
        let results = futures_join3(
            claims.reclaim(&ssm, priority, &stale, &owners[0]),
            claims.reclaim(&ssm, priority, &stale, &owners[1]),
            claims.reclaim(&ssm, priority, &stale, &owners[2]),
        )
        .await;
        let won: Vec<usize> = (0..3)
            .filter(|i| results[*i].as_ref().expect("reclaim") == &Claimed::Won)
            .collect();
        assert_eq!(won.len(), 1, "priority {priority}: winners {won:?}");
        let holder = claims.owner(&ssm, priority).await.expect("owner");
        assert_eq!(holder.as_ref(), Some(&owners[won[0]]), "priority {priority}");
    }

    // One after the other with the same stale read: the second sees the first's write and loses.
    put_claim(&arn, 20, STALE).await;
    let stale = read(20).await;
    assert_eq!(
        claims.reclaim(&ssm, 20, &stale, &owners[0]).await.unwrap(),
        Claimed::Won
    );
    assert_eq!(
        claims.reclaim(&ssm, 20, &stale, &owners[1]).await.unwrap(),
        Claimed::Lost
    );
    assert_eq!(claims.owner(&ssm, 20).await.unwrap().as_ref(), Some(&owners[0]));

    // Deleted and claimed afresh after the stale read: versions start again at 1, and the fresh
    // claim is not taken over even though the reclaimer writes the version after the one it read.
    put_claim(&arn, 21, STALE).await;
    let stale = read(21).await;
    assert_eq!(stale.version, 1);
    let name = claims.name(21);
    ssm.delete_parameter().name(&name).send().await.expect("delete");
    assert_eq!(claims.claim(&ssm, 21, &owners[2]).await.unwrap(), Claimed::Won);
    assert_eq!(
        claims.reclaim(&ssm, 21, &stale, &owners[0]).await.unwrap(),
        Claimed::Lost
    );
    assert_eq!(claims.owner(&ssm, 21).await.unwrap().as_ref(), Some(&owners[2]));
}

/// Runs three futures at once on this task and returns their outputs in order.
async fn futures_join3<A: std::future::Future>(a: A, b: A, c: A) -> [A::Output; 3] {
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}

/// Every SSM parameter the handler keeps for a listener (its claims and its `_state`), as
/// (name, version, value).
async fn listener_parameters(listener: &str) -> Vec<(String, i64, String)> {
    let id = listener.split_once(":listener/").expect("listener arn").1;
    let mut out = parameters_under(&format!("{CLAIM_ROOT}/{id}")).await;
    out.extend(parameters_under(&format!("{CLAIM_ROOT}/_state/{id}")).await);
    out.sort();
    out
}

/// An Update whose only change is CloudFormation's own (`ServiceToken`, `ServiceTimeout`) keeps
/// the priority and writes no claim, no hint, nothing.
async fn an_update_changing_only_service_token_or_timeout_writes_nothing() {
    let arn = listener([1, 2, 5]);
    let harness = start().await;
    let properties = json!({"ListenerArn": arn, "MinPriority": "1", "MaxPriority": "50000"});
    let created = create(&harness, "Priority", properties.clone()).await;
    let id = created.physical_id().expect("a physical id").to_string();
    let before = listener_parameters(&arn).await;
    assert!(!before.is_empty(), "the Create wrote its claim");
    let mut event = harness.events.update(
        RESOURCE_TYPE,
        "Priority",
        &id,
        properties.clone(),
        properties.clone(),
    );
    event["ResourceProperties"]["ServiceToken"] =
        json!("arn:aws:lambda:us-east-1:123456789012:function:listener-rule-priority-v2");
    event["ResourceProperties"]["ServiceTimeout"] = json!("600");
    let updated = harness.call(event).await;
    harness.assert_success(&updated);
    assert_eq!(updated.physical_id(), Some(id.as_str()));
    assert_eq!(priority(&updated), priority(&created));
    assert_eq!(
        listener_parameters(&arn).await,
        before,
        "an Update that changes nothing wrote to SSM"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults: throttling, 5xx, dropped connections, a process killed mid-request

async fn start_faulty(seed: u64, rate: f64) -> (Harness, local_invoke::faults::FaultProxy) {
    let proxy = local_invoke::faults::FaultProxy::start(&services::moto().endpoint, seed, rate).await;
    let harness = Harness::start(BINARY, &proxy.env()).await;
    (harness, proxy)
}

/// The claims this resource holds on a listener.
async fn claims_of(listener: &str, owner: &str) -> Vec<u32> {
    claims(listener)
        .await
        .into_iter()
        .filter(|(_, holder)| holder == owner)
        .map(|(priority, _)| priority)
        .collect()
}

/// Create, a duplicate Create, an Update that keeps the priority and one that replaces it
/// (Count 2), the cleanup Delete of the old id and the Delete of the new, with a quarter of the
/// AWS requests faulted: each answered once with SUCCESS, one claim per priority held, none left.
async fn a_sequence_at_25_percent_injected_aws_faults() {
    for seed in [21, 22, 23] {
        let arn = listener([1, 2, 5]);
        let (harness, proxy) = start_faulty(seed, 0.25).await;
        let once = |x: &Exchange, what: &str| {
            assert_eq!(x.puts.len(), 1, "seed {seed} {what}: {} responses", x.puts.len());
            harness.assert_success(x);
        };
        let one = json!({"ListenerArn": arn});
        let two = json!({"ListenerArn": arn, "Count": "2"});
        let mine = owner(&harness, "Priority");
        let create = harness.events.create(RESOURCE_TYPE, "Priority", one.clone());
        let created = harness.call(create.clone()).await;
        once(&created, "Create");
        let id = created.physical_id().expect("a physical id").to_string();
        let duplicate = harness.call(local_invoke::EventBuilder::retry(&create)).await;
        once(&duplicate, "duplicate Create");
        assert_eq!(duplicate.physical_id(), Some(id.as_str()));
        assert_eq!(claims_of(&arn, &mine).await, vec![priority(&created)]);
        let kept = harness
            .call(
                harness
                    .events
                    .update(RESOURCE_TYPE, "Priority", &id, one.clone(), one.clone()),
            )
            .await;
        once(&kept, "kept Update");
        assert_eq!(kept.physical_id(), Some(id.as_str()));
        let replaced = harness
            .call(
                harness
                    .events
                    .update(RESOURCE_TYPE, "Priority", &id, two.clone(), one.clone()),
            )
            .await;
        once(&replaced, "replacing Update");
        let new_id = replaced.physical_id().expect("a physical id").to_string();
        assert_ne!(new_id, id);
        assert_eq!(
            claims_of(&arn, &mine).await.len(),
            3,
            "the old claim and two new ones"
        );
        let cleanup = harness
            .call(harness.events.delete(RESOURCE_TYPE, "Priority", &id, one))
            .await;
        once(&cleanup, "cleanup Delete");
        assert_eq!(claims_of(&arn, &mine).await.len(), 2);
        let deleted = harness
            .call(harness.events.delete(RESOURCE_TYPE, "Priority", &new_id, two))
            .await;
        once(&deleted, "Delete");
        assert_eq!(
            claims_of(&arn, &mine).await,
            Vec::<u32>::new(),
            "claims survived their Delete"
        );
        let seen = proxy.seen();
        let faulted = seen.iter().filter(|s| s.fault.is_some()).count();
        eprintln!("seed {seed}: {faulted} of {} AWS requests faulted", seen.len());
        assert!(faulted > 0, "seed {seed}: the proxy injected nothing");
    }
}

/// The claims a replacing Update's answer names (`Data.Priorities`) and the one the old id
/// (`old_id`, `<listener>/priority/<n>`) still holds, sorted.
fn updated_claims(updated: &Exchange, old_id: Option<&str>) -> Vec<u32> {
    let mut named: Vec<u32> = updated
        .data("Priorities")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    named.extend(old_id.and_then(|id| id.rsplit('/').next()?.parse::<u32>().ok()));
    named.sort();
    named
}

/// After a replacing Update (`updated`): the cleanup Delete of the old id (properties `one`)
/// and the Delete of the new (`two`) both succeed, and `mine` holds no claim on `arn` after them.
async fn both_deletes_leave_no_claim(
    harness: &Harness,
    arn: &str,
    mine: &str,
    old_id: &str,
    updated: &Exchange,
    (one, two): (&Value, &Value),
    what: &str,
) {
    let cleanup = harness
        .call(
            harness
                .events
                .delete(RESOURCE_TYPE, "Priority", old_id, one.clone()),
        )
        .await;
    harness.assert_success(&cleanup);
    let deleted = harness
        .call(harness.events.delete(
            RESOURCE_TYPE,
            "Priority",
            updated.physical_id().expect("a physical id"),
            two.clone(),
        ))
        .await;
    harness.assert_success(&deleted);
    let left = claims_of(arn, mine).await;
    assert!(
        left.is_empty(),
        "{what}: after both Deletes claims {left:?} leaked"
    );
}

/// Create, a replacing Update and Delete, each killed once moto has acted on its k-th AWS
/// request (for every k), then re-delivered to a new process: SUCCESS, the only response, and the
/// resource holds exactly the claims its answer names; after Delete it holds none. A claim the
/// killed attempt wrote is recognised as this resource's own.
async fn killed_after_each_aws_call_then_redelivered() {
    let mut points = 0;
    for phase in ["Create", "Update", "Delete"] {
        let mut k = 1;
        loop {
            let arn = listener([1, 2, 5]);
            let (mut harness, proxy) = start_faulty(k as u64, 0.0).await;
            let env = proxy.env();
            let one = json!({"ListenerArn": arn});
            let two = json!({"ListenerArn": arn, "Count": "2"});
            let mine = owner(&harness, "Priority");
            let setup = if phase == "Create" {
                None
            } else {
                let created = create(&harness, "Priority", one.clone()).await;
                harness.restart(&env).await;
                Some(created.physical_id().expect("a physical id").to_string())
            };
            let event = match (phase, &setup) {
                ("Create", _) => harness.events.create(RESOURCE_TYPE, "Priority", one.clone()),
                ("Update", Some(id)) => {
                    harness
                        .events
                        .update(RESOURCE_TYPE, "Priority", id, two.clone(), one.clone())
                }
                (_, Some(id)) => harness.events.delete(RESOURCE_TYPE, "Priority", id, one.clone()),
                _ => unreachable!(),
            };
            proxy.kill_at(k, harness.lambda.pid());
            if let Some(finished) = harness.call_unless_killed(event.clone()).await {
                harness.assert_success(&finished);
                assert!(k > 1, "{phase} made no AWS request");
                break;
            }
            harness.restart(&env).await;
            let again = harness.call(local_invoke::EventBuilder::retry(&event)).await;
            let what = format!("{phase} re-delivered after a kill at AWS request {k}");
            assert_eq!(
                harness.all_puts_for(&event).len(),
                1,
                "{what}: one response in all"
            );
            harness.assert_success(&again);
            let held = claims_of(&arn, &mine).await;
            match phase {
                "Create" => assert_eq!(held, vec![priority(&again)], "{what}: claims {held:?}"),
                "Update" => {
                    // The old id's claim stays until CloudFormation deletes the old id.
                    let named = updated_claims(&again, setup.as_deref());
                    assert_eq!(held, named, "{what}: claims {held:?}");
                    let old_id = setup.as_ref().unwrap();
                    both_deletes_leave_no_claim(&harness, &arn, &mine, old_id, &again, (&one, &two), &what)
                        .await;
                }
                _ => assert!(held.is_empty(), "{what}: claims {held:?} leaked"),
            }
            if phase == "Create" {
                let deleted = harness
                    .call(harness.events.delete(
                        RESOURCE_TYPE,
                        "Priority",
                        again.physical_id().expect("a physical id"),
                        one.clone(),
                    ))
                    .await;
                harness.assert_success(&deleted);
                let left = claims_of(&arn, &mine).await;
                assert!(left.is_empty(), "{what}: after its Delete claims {left:?} leaked");
            }
            points += 1;
            k += 1;
        }
    }
    eprintln!("listener-rule-priority: {points} crash points, each re-delivered to SUCCESS");
    assert!(points >= 6, "only {points} crash points");
}
