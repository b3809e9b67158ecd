//! A short seeded pass of the in-process fuzzer (`make fuzz` runs a million inputs per handler).

use libtest_mimic::Trial;
use local_invoke::fuzz;

/// Inputs per handler type in `make test`: a few seconds in a debug build.
const INPUTS: u64 = 4_000;

pub(crate) fn trials() -> Vec<Trial> {
    fuzz::HANDLERS
        .iter()
        .map(|handler| {
            Trial::test(
                format!("fuzz::{}_short_seeded_pass", handler.replace('-', "_")),
                move || {
                    let report = fuzz::run(handler, INPUTS, 25);
                    let shown: Vec<String> = report
                        .findings
                        .iter()
                        .map(|f| {
                            format!(
                                "{}: {}",
                                f.what,
                                String::from_utf8_lossy(&f.input[..f.input.len().min(300)])
                            )
                        })
                        .collect();
                    assert!(
                        report.finding_count == 0,
                        "{} finding(s) in {} inputs:\n{}",
                        report.finding_count,
                        report.inputs,
                        shown.join("\n")
                    );
                    // The pass must reach every kind of outcome, or it checks less than it seems to.
                    assert!(
                        report.responses > 0 && report.failed > 0 && report.not_strict > 0,
                        "{}",
                        fuzz::summary(&report)
                    );
                    Ok(())
                },
            )
        })
        .collect()
}
