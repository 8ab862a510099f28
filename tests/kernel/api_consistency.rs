//! The management API keeps what it is told, and only that: concurrent
//! read-modify-write updates lose nothing (etags and `if-match`), a stale
//! or bogus etag is refused, one API statement is exactly one statement,
//! and HTTP it cannot read unambiguously is refused.

use std::{
    fs,
    io::{Read as _, Write as _},
    process::{Command, Output, Stdio},
};

use serde_json::Value;
use zpr_tests::{
    os_users::TestUser,
    served_agent::ServedAgent,
    three_tier::{Network, example},
};

const OPEN_LB: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

/// A statement of its own for each `port`.
fn statement(port: u16) -> String {
    format!(
        "In ocvtc002.networks:front-end VCN allow ocvtc002.lb:frontend endpoints to connect to ocvtc002.apps:server endpoints with protocol='udp/{port}'"
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One raw HTTP exchange on the API socket as `user`: (status, body).
fn raw(agent: &ServedAgent, user: &str, request: &str) -> anyhow::Result<(u16, String)> {
    let mut netcat = Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--init-groups", "nc", "-N", "-U"])
        .arg(&agent.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    netcat
        .stdin
        .take()
        .expect("piped")
        .write_all(request.as_bytes())?;
    let mut answer = String::new();
    netcat
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut answer)?;
    netcat.wait()?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok((status, body))
}

/// `PUT /zprPolicies/ID` with `if-match`, as `user`.
fn put(
    agent: &ServedAgent,
    user: &str,
    id: &str,
    if_match: &str,
    statements: &[String],
) -> anyhow::Result<u16> {
    let body = serde_json::json!({ "statements": statements }).to_string();
    let request = format!(
        "PUT /20240301/zprPolicies/{id} HTTP/1.1\r\nHost: zpr\r\nIf-Match: {if_match}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Ok(raw(agent, user, &request)?.0)
}

/// `zpr serve` on the three-tier network, seeded with the example
/// inventory, administered by a user of its own. (Fields drop in order:
/// the agent before its network.)
struct Served {
    agent: ServedAgent,
    admin: TestUser,
    _network: Network,
}

impl Served {
    fn start(tag: &str) -> anyhow::Result<Served> {
        let network = Network::start()?;
        let admin = TestUser::create(tag)?;
        let agent = ServedAgent::start(
            network.router(),
            &example("inventory.yaml"),
            "",
            &admin.name,
        )?;
        Ok(Served {
            agent,
            admin,
            _network: network,
        })
    }
}

fn get(agent: &ServedAgent, user: Option<&str>, id: &str) -> anyhow::Result<Value> {
    let output = agent.cli(user, &["policy", "get", id, "--output", "json"])?;
    anyhow::ensure!(output.status.success(), "{}", text(&output));
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[test]
fn concurrent_updates_lose_nothing_and_stale_etags_are_refused() -> anyhow::Result<()> {
    let served = Served::start("zac")?;
    let (agent, admin) = (&served.agent, &served.admin);
    let user = Some(admin.name.as_str());
    let created = agent.cli(
        user,
        &["policy", "create", "shared", "--statement", OPEN_LB],
    )?;
    assert!(created.status.success(), "{}", text(&created));

    // Two clients append 12 statements each, at the same time.
    std::thread::scope(|scope| {
        let appenders: Vec<_> = [20_000u16, 30_000]
            .into_iter()
            .map(|base| {
                scope.spawn(move || -> anyhow::Result<()> {
                    for port in base..base + 12 {
                        let added = agent.cli(
                            user,
                            &[
                                "policy",
                                "update",
                                "shared",
                                "--add-statement",
                                &statement(port),
                            ],
                        )?;
                        anyhow::ensure!(added.status.success(), "{}", text(&added));
                    }
                    Ok(())
                })
            })
            .collect();
        appenders
            .into_iter()
            .try_for_each(|appender| appender.join().expect("an appender panicked"))
    })?;
    let policy = get(agent, user, "shared")?;
    let statements = policy["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 25, "every append is kept: {policy:#}");

    // A bogus etag, then a stale one, change nothing; the current one does.
    let id = policy["id"].as_str().unwrap().to_owned();
    let etag = policy["etag"].as_str().unwrap().to_owned();
    let only_lb = vec![OPEN_LB.to_owned()];
    assert_eq!(put(agent, &admin.name, &id, "bogus", &only_lb)?, 412);
    assert_eq!(
        get(agent, user, "shared")?["statements"]
            .as_array()
            .unwrap()
            .len(),
        25
    );
    let described = agent.cli(user, &["policy", "update", "shared", "--description", "d"])?;
    assert!(described.status.success(), "{}", text(&described));
    assert_eq!(
        put(agent, &admin.name, &id, &etag, &only_lb)?,
        412,
        "stale after the update"
    );
    let fresh = get(agent, user, "shared")?;
    assert_eq!(fresh["statements"].as_array().unwrap().len(), 25);
    assert_eq!(
        put(
            agent,
            &admin.name,
            &id,
            fresh["etag"].as_str().unwrap(),
            &only_lb
        )?,
        200
    );
    assert_eq!(
        get(agent, user, "shared")?["statements"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    Ok(())
}

#[test]
fn one_api_statement_is_one_statement_and_ambiguous_http_is_refused() -> anyhow::Result<()> {
    let served = Served::start("zan")?;
    let (agent, admin) = (&served.agent, &served.admin);
    let user = Some(admin.name.as_str());
    let two_in_one = format!("{}\n{}", statement(81), statement(82));
    let refused = agent.cli(
        user,
        &["policy", "create", "nl", "--statement", &two_in_one],
    )?;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("contains a line break"),
        "{}",
        text(&refused)
    );
    let empty = agent.cli(user, &["policy", "create", "empty", "--statement", ""])?;
    assert!(!empty.status.success());
    assert!(
        text(&empty).contains("statement 1 is empty"),
        "{}",
        text(&empty)
    );
    let listed = agent.cli(user, &["policy", "list", "--output", "json"])?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    // A 3 MB bad name is refused, and the audit log quotes it bounded.
    let body = serde_json::json!({ "name": "n".repeat(3 << 20) }).to_string();
    let (status, answer) = raw(
        agent,
        &admin.name,
        &format!(
            "POST /20240301/securityAttributeNamespaces HTTP/1.1\r\nHost: zpr\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    assert_eq!(status, 400);
    assert!(
        answer.len() < 64 << 10,
        "an answer of {} bytes",
        answer.len()
    );
    let audit = fs::read_to_string(agent.run_dir.join("audit.jsonl"))?;
    let longest = audit.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 8 << 10, "an audit line of {longest} bytes");

    let body = r#"{"name":"x","statements":[]}"#;
    let (status, answer) = raw(
        agent,
        &admin.name,
        &format!(
            "POST /20240301/zprPolicies HTTP/1.1\r\nHost: zpr\r\nContent-Length: {}\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("two content-length headers"), "{answer}");
    let (status, answer) = raw(
        agent,
        &admin.name,
        &format!(
            "POST /20240301/zprPolicies HTTP/1.1\r\nHost: zpr\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        ),
    )?;
    assert_eq!(status, 411, "{answer}");
    let listed = agent.cli(user, &["policy", "list", "--output", "json"])?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    Ok(())
}
