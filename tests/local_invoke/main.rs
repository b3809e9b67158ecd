//! Local-invoke tests: the real compiled Lambda binaries, driven through the harness's Runtime
//! API, answering to its ResponseURL receiver, against real local services (moto, PostgreSQL).
//!
//! One test binary (`harness = false`, libtest-mimic): `main` collects every area's tests, runs
//! them in parallel, then stops the services it started.

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

/// A trial from an async test body, run on the harness runtime. A panic fails the trial.
pub fn trial<F, Fut>(name: &str, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    Trial::test(name, move || {
        local_invoke::block_on(test());
        Ok(())
    })
}
