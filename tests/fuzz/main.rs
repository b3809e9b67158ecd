//! `make fuzz`: the seeded mutation fuzzer over the whole event path (`local_invoke::fuzz`), for
//! each Lambda handler type. Prints the count and the rate; exits non-zero on any finding, and
//! writes each finding's input to `target/fuzz-findings/`.
//!
//! `fuzz [INPUTS_PER_HANDLER] [SEED]`, default 1,000,000 and 1; `fuzz --replay HANDLER FILE` runs
//! one input and prints the responses and the log lines.

use local_invoke::fuzz;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--replay") {
        let handler = args.nth(1).expect("--replay HANDLER FILE");
        let file = args.next().expect("--replay HANDLER FILE");
        let input = std::fs::read(&file).expect("the input file");
        println!("{}", fuzz::replay(&handler, &input));
        return;
    }
    let inputs: u64 = args
        .next()
        .map(|a| {
            a.replace(['_', ','], "")
                .parse()
                .expect("INPUTS_PER_HANDLER: a whole number")
        })
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .next()
        .map(|a| a.parse().expect("SEED: a whole number"))
        .unwrap_or(1);
    let out = std::path::Path::new(&std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("fuzz-findings");
    let mut total = 0;
    let mut findings = 0;
    let mut elapsed = 0.0;
    for handler in fuzz::HANDLERS {
        let report = fuzz::run(handler, inputs, seed);
        println!(
            "fuzz {handler}: {} inputs in {:.1} s = {:.0} inputs/s, {} finding(s) ({})",
            report.inputs,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.finding_count,
            fuzz::summary(&report)
        );
        for (n, finding) in report.findings.iter().enumerate() {
            let _ = std::fs::create_dir_all(&out);
            let path = out.join(format!("{handler}-{n}.json"));
            let _ = std::fs::write(&path, &finding.input);
            println!("  {}: {}", path.display(), finding.what);
        }
        total += report.inputs;
        findings += report.finding_count;
        elapsed += report.elapsed.as_secs_f64();
    }
    println!(
        "fuzz: {total} inputs ({inputs} per handler, seed {seed}) in {elapsed:.1} s = {:.0} inputs/s, {findings} finding(s)",
        total as f64 / elapsed.max(1e-9)
    );
    if findings > 0 {
        std::process::exit(1);
    }
}
