//! Local-invoke tests: the real compiled Lambda binaries, driven through the harness's Runtime
//! API, answering to its ResponseURL receiver, against real local services (moto, PostgreSQL).
//!
//! One test binary (`harness = false`, libtest-mimic): `main` collects every area's tests, runs
//! them in parallel, then stops the services it started.

/// The `Vec<Trial>` of an area's tests, each registered under `<prefix>::<path of its function>`
/// spelled from the tokens themselves, so a test's name cannot differ from the function it runs:
/// `trials![guarantee; hang_fails_before_the_deadline_once]` runs
/// `hang_fails_before_the_deadline_once` as `guarantee::hang_fails_before_the_deadline_once`, and
/// `trials![authz; admin_secret::unusable_keys_refused]` as
/// `authz::admin_secret::unusable_keys_refused`. The functions are async (run by [`trial`]);
/// `trials![sync contract; ...]` registers plain `fn() -> Result<(), Failed>`s.
macro_rules! trials {
    (sync $prefix:path; $($test:path),+ $(,)?) => {
        vec![$(::libtest_mimic::Trial::test(
            concat!(stringify!($prefix), "::", stringify!($test)),
            $test,
        )),+]
    };
    ($prefix:path; $($test:path),+ $(,)?) => {
        vec![$(crate::trial(
            concat!(stringify!($prefix), "::", stringify!($test)),
            $test,
        )),+]
    };
}

mod admin_secret;
mod authz;
mod contract;
mod dead_letter;
mod engine;
mod fuzz;
mod guarantee;
mod leaks;
mod listener_priority;
mod sample_events;
mod service_database;
mod trust;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(guarantee::trials());
    trials.extend(contract::trials());
    trials.extend(listener_priority::trials());
    trials.extend(admin_secret::trials());
    trials.extend(service_database::trials());
    trials.extend(sample_events::trials());
    trials.extend(trust::trials());
    trials.extend(authz::trials());
    trials.extend(leaks::trials());
    trials.extend(engine::trials());
    trials.extend(fuzz::trials());
    trials.extend(dead_letter::trials());
    let conclusion = libtest_mimic::run(&args, trials);
    local_invoke::services::shutdown();
    conclusion.exit();
}

/// A trial from an async test body, run on the harness runtime. A panic fails the trial. Areas
/// register through [`trials!`], which names each trial after its function.
fn trial<F, Fut>(name: &str, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    Trial::test(name, move || {
        local_invoke::block_on(test());
        Ok(())
    })
}
