//! One test in a process of its own, for the two tests whose subject is the whole process:
//! its environment variables (`credentials::from_env`: set for the child only, so nothing in
//! this binary ever calls `std::env::set_var` while other test threads read the environment)
//! and its peak memory (`ingest_faults`' 10,000-record batch, which tests running beside it
//! in this process would inflate).
//!
//! The parent test starts this same binary filtered to exactly one `#[ignore]`d test that
//! does the work, and passes when that test passed. Run directly (`--ignored`), the child
//! test finds no [`CHILD`] marker and returns at once.

use std::process::Command;

/// Set in the child's environment by [`run_alone`].
const CHILD: &str = "KIT_TEST_ALONE";

/// Runs the ignored test `name` (its path in this binary, `module::test`) alone in a child
/// process of this binary, whose environment is this one's with `set` added and `remove`
/// taken out; panics with the child's output unless its one test passed.
pub fn run_alone(name: &str, set: &[(&str, &str)], remove: &[&str]) {
    let binary = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(binary);
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name);
    for (key, value) in set {
        command.env(key, value);
    }
    for key in remove {
        command.env_remove(key);
    }
    let output = command.output().expect("the test binary starts again");
    // Indented, so the child's own `test result:` line is not counted with this binary's
    // (scripts/test.sh sums those lines).
    let shown = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|line| format!("  | {line}\n"))
            .collect::<String>()
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, alone in a child process ({}):\n{}{}",
        output.status,
        shown(&output.stdout),
        shown(&output.stderr)
    );
}

/// Whether this process was started by [`run_alone`] for the test `name`.
pub fn is_child_for(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|value| value == name)
}
