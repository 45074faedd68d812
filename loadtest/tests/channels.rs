//! Each channel command through the real binary, small: the sink's own counts must show every
//! recipient taken exactly once, and (push, WeChat) some sends answered with a transient
//! error and sent again.

use std::process::Command;

/// Runs `herald-loadtest <args>`; answers its standard output, failing on a non-zero exit.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
        .args(args)
        .output()
        .expect("run herald-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The sink's numbers: (taken, answered with a transient error).
fn at_the_sink(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("at the sink"))
        .unwrap_or_else(|| panic!("no sink line in\n{stdout}"));
    let inner = &line[line.rfind('(').expect("(") + 1..];
    let mut numbers = inner
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .filter(|w| !w.is_empty() && *w != ",")
        .map(|w| w.replace(',', "").parse::<u64>().expect("number"));
    (
        numbers.next().expect("taken"),
        numbers.next().expect("refused"),
    )
}

#[test]
fn email_reaches_every_recipient_once() {
    let out = run(&["email", "--recipients", "300", "--connections", "4"]);
    assert!(out.contains("lost 0  duplicated 0"), "{out}");
    assert_eq!(at_the_sink(&out).0, 300, "{out}");
}

#[test]
fn push_reaches_every_device_once_through_both_services_with_retries() {
    let out = run(&["push", "--recipients", "400", "--refuse-every", "20"]);
    assert!(out.contains("lost 0  duplicated 0"), "{out}");
    let (taken, refused) = at_the_sink(&out);
    assert_eq!(taken, 400, "{out}");
    assert!(refused >= 10, "transient errors answered: {refused}\n{out}");
    assert!(out.contains("taken by FCM 200, by APNs 200"), "{out}");
}

#[test]
fn wechat_reaches_every_follower_once_with_quota_retries() {
    let out = run(&["wechat", "--recipients", "300", "--refuse-every", "20"]);
    assert!(out.contains("lost 0  duplicated 0"), "{out}");
    let (taken, refused) = at_the_sink(&out);
    assert_eq!(taken, 300, "{out}");
    assert!(refused >= 10, "45009 answers: {refused}\n{out}");
}
