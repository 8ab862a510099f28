//! The management API over the network (`zpr serve --listen`), with mutual
//! TLS: callers in another network namespace are the user and groups their
//! client certificate names (CN; O and OU), IAM decides as it does on the
//! socket, and the audit log names the certificate's subject and serial.
//! Certificates from another CA, expired ones and none at all are refused
//! in the handshake; a flood of idle TLS clients and a slowloris do not
//! keep out a client that asks. A policy made this way from outside a
//! fleet is enforced on every host. Certificates are made here (rcgen).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Output,
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use zpr_tests::{
    Netns,
    agent::zpr_binary,
    fleet::{Fleet, revision_of, three_hosts::APPS_TO_DB},
    pki::{Credentials, Pki, Subject},
    served_agent::ServedAgent,
    three_tier::example,
    unique_name, veth_pair,
};

const SERVER: &str = "192.168.77.1";
const CLIENT: &str = "192.168.77.2";
const PORT: u16 = 8443;
const ADMINS: &str = "zpr-remote-admins";
const AUDITORS: &str = "zpr-remote-auditors";
const STATEMENT: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

/// `zpr serve` with the API on the socket and at `SERVER:PORT` over mutual
/// TLS, in a namespace of its own; the client's namespace beside it.
struct RemoteApi {
    agent: ServedAgent,
    client: Netns,
    _server: Netns,
    pki: Pki,
}

impl RemoteApi {
    fn start() -> RemoteApi {
        let server = Netns::new().unwrap();
        let client = Netns::new().unwrap();
        veth_pair(
            &server,
            &format!("{SERVER}/24"),
            &client,
            &format!("{CLIENT}/24"),
        )
        .unwrap();
        let pki = Pki::new(&std::env::temp_dir().join(unique_name("zar"))).unwrap();
        let identity = pki.issue("zpr-api", &[SERVER]).unwrap();
        let iam = format!(
            "Allow group {ADMINS} to manage zpr-policy in tenancy
             Allow group {AUDITORS} to inspect zpr-policy in tenancy"
        );
        let agent = ServedAgent::start_with(
            &server,
            &example("inventory.yaml"),
            &iam,
            "root",
            &listen_arguments(&format!("{SERVER}:{PORT}"), &identity, &pki.ca()),
            &[],
        )
        .unwrap();
        RemoteApi {
            agent,
            client,
            _server: server,
            pki,
        }
    }

    /// `zpr ARGS --api https://SERVER:PORT` from the client's namespace,
    /// showing `identity` and trusting `server_ca`.
    fn call_as(&self, identity: &Credentials, server_ca: &Path, arguments: &[&str]) -> Output {
        remote_cli(
            &self.client,
            &format!("https://{SERVER}:{PORT}"),
            identity,
            server_ca,
            arguments,
        )
    }

    fn call(&self, identity: &Credentials, arguments: &[&str]) -> Output {
        self.call_as(identity, &self.pki.ca(), arguments)
    }

    fn client(&self, subject: Subject) -> Credentials {
        self.pki.issue_client(&subject).unwrap()
    }

    fn policies(&self) -> String {
        let listed = self.agent.cli(None, &["policy", "list"]).unwrap();
        assert!(listed.status.success(), "{}", text(&listed));
        text(&listed)
    }
}

fn listen_arguments(address: &str, identity: &Credentials, client_ca: &Path) -> Vec<String> {
    [
        "--listen",
        address,
        "--tls-cert",
        &identity.cert.display().to_string(),
        "--tls-key",
        &identity.key.display().to_string(),
        "--client-ca",
        &client_ca.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn remote_cli(
    netns: &Netns,
    url: &str,
    identity: &Credentials,
    server_ca: &Path,
    arguments: &[&str],
) -> Output {
    let binary = zpr_binary().display().to_string();
    let (cert, key, cacert) = (
        identity.cert.display().to_string(),
        identity.key.display().to_string(),
        server_ca.display().to_string(),
    );
    let mut command = vec![binary.as_str()];
    command.extend_from_slice(arguments);
    command.extend_from_slice(&[
        "--api", url, "--cert", &cert, "--key", &key, "--cacert", &cacert,
    ]);
    netns.try_exec(&command).unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn subject(common_name: &str, organization: &str) -> Subject {
    Subject {
        organization: Some(organization.to_owned()),
        ..Subject::named(common_name)
    }
}

#[test]
fn a_remote_caller_is_the_user_and_groups_its_certificate_names() {
    let api = RemoteApi::start();
    let alice = api.client(Subject {
        serial: Some(vec![0x0a, 0x1c, 0xe5]),
        ..subject("alice", ADMINS)
    });
    let carol = api.client(Subject {
        unit: Some(AUDITORS.to_owned()),
        ..subject("carol", "elsewhere")
    });
    let bob = api.client(Subject {
        serial: Some(vec![0x0b, 0x0b]),
        ..subject("bob", "visitors")
    });
    let generation = api.agent.generation();

    let created = api.call(
        &alice,
        &["policy", "create", "p1", "--statement", STATEMENT],
    );
    assert!(created.status.success(), "{}", text(&created));
    assert!(api.policies().contains("p1"));
    assert!(
        api.agent.generation() > generation,
        "the agent enforced the change before the API answered"
    );

    // An OU is a group as an O is: carol may inspect, not delete.
    let listed = api.call(&carol, &["policy", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(text(&listed).contains("p1"), "{}", text(&listed));
    let deleted = api.call(&carol, &["policy", "delete", "p1"]);
    assert_eq!(deleted.status.code(), Some(1), "{}", text(&deleted));
    assert!(text(&deleted).contains("(403)"), "{}", text(&deleted));

    let refused = api.call(&bob, &["policy", "create", "p2", "--statement", STATEMENT]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("(403)"), "{}", text(&refused));
    assert!(!api.policies().contains("p2"));

    let audit = api.agent.audit();
    let by = |user: &str| -> Vec<&Value> {
        audit
            .iter()
            .filter(|record| record["principal"]["user"] == user)
            .collect()
    };
    let alice_created = by("alice")
        .into_iter()
        .find(|record| record["allowed"] == true && record["operation"] == "CreateZprPolicy")
        .unwrap_or_else(|| panic!("no audit record of alice's create: {audit:#?}"));
    let certificate = &alice_created["principal"]["certificate"];
    assert_eq!(certificate["serial"], "0A1CE5", "{alice_created:#}");
    let subject = certificate["subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains("CN=alice") && subject.contains(&format!("O={ADMINS}")),
        "{alice_created:#}"
    );
    assert_eq!(alice_created["principal"]["groups"][0], ADMINS);
    assert!(
        by("bob").iter().any(|record| record["allowed"] == false
            && record["principal"]["certificate"]["serial"] == "0B0B"),
        "{audit:#?}"
    );
}

#[test]
fn clients_the_api_does_not_trust_are_refused_in_the_handshake() {
    let api = RemoteApi::start();
    let other_ca = Pki::new(&std::env::temp_dir().join(unique_name("zao"))).unwrap();
    let create = ["policy", "create", "p1", "--statement", STATEMENT];

    let foreign = other_ca.issue_client(&subject("mallory", ADMINS)).unwrap();
    let refused = api.call(&foreign, &create);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("refused this client's certificate"),
        "{}",
        text(&refused)
    );

    let expired = api.client(Subject {
        expired: true,
        ..subject("old", ADMINS)
    });
    let refused = api.call(&expired, &create);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("refused this client's certificate"),
        "{}",
        text(&refused)
    );

    // The client checks the server too: another CA's server is not it.
    let alice = api.client(subject("alice", ADMINS));
    let refused = api.call_as(&alice, &other_ca.ca(), &create);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("not one --cacert vouches for"),
        "{}",
        text(&refused)
    );

    // No client certificate at all: the handshake fails, nothing is read.
    let answer = api
        .client
        .enter(|| request_without_certificate(&api.pki.ca()))
        .unwrap();
    assert!(
        answer.is_err(),
        "answered without a certificate: {answer:?}"
    );

    assert!(!api.policies().contains("p1"));
    assert!(
        api.agent
            .audit()
            .iter()
            .all(|record| record["principal"]["user"] != "mallory"
                && record["principal"]["user"] != "old"),
        "{:#?}",
        api.agent.audit()
    );
    // The right certificate still works after all that.
    let created = api.call(&alice, &create);
    assert!(created.status.success(), "{}", text(&created));
}

/// A TLS client that trusts the server but shows no certificate: what it
/// reads back, or why it could not.
fn request_without_certificate(server_ca: &Path) -> anyhow::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(server_ca)? {
        roots.add(certificate?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        #[allow(deprecated)]
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), SERVER.to_owned().try_into()?)?;
    let tcp = TcpStream::connect((SERVER, PORT))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(b"GET /20240301/zprPolicies HTTP/1.1\r\nHost: zpr\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn many_tls_clients_and_a_slowloris_do_not_keep_out_a_client_that_asks() {
    let api = RemoteApi::start();
    let alice = api.client(subject("alice", ADMINS));
    let address: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
    // Hundreds of connections from the client's address that never start
    // the handshake, and a few that send a byte every second.
    let (idle, dripping) = api
        .client
        .enter(|| {
            let open = |_| TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok();
            let idle: Vec<TcpStream> = (0..300).filter_map(open).collect();
            let dripping: Vec<TcpStream> = (0..8).filter_map(open).collect();
            (idle, dripping)
        })
        .unwrap();
    assert!(idle.len() > 100, "the flood could not connect");
    let drip = std::thread::spawn(move || {
        for _ in 0..15 {
            for mut stream in &dripping {
                let _ = stream.write_all(&[0x16]);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    std::thread::sleep(Duration::from_secs(2));

    let calls: Vec<Output> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| api.call(&alice, &["policy", "list"])))
            .collect();
        running
            .into_iter()
            .map(|call| call.join().unwrap())
            .collect()
    });
    for call in &calls {
        assert!(call.status.success(), "{}", text(call));
    }
    // And on the socket, root is served as ever.
    api.policies();
    drop(idle);
    drip.join().unwrap();
}

#[test]
fn a_policy_made_through_the_remote_api_from_another_namespace_is_enforced_on_every_host() {
    let mut fleet = Fleet::three_hosts(&[1521], true).unwrap();
    assert!(!fleet.works("app-1", "db", 1521));
    let pki = Pki::new(&std::env::temp_dir().join(unique_name("zaf"))).unwrap();
    // The API server runs in host A's namespace, at its spine address.
    let identity = pki.issue("zpr-api", &["172.31.0.2"]).unwrap();
    let operators = "zpr-fleet-operators";
    fleet.api.kill();
    fleet.api.arguments.extend(listen_arguments(
        &format!("172.31.0.2:{PORT}"),
        &identity,
        &pki.ca(),
    ));
    fleet
        .api
        .arguments
        .extend(["--bootstrap-admin".to_owned(), operators.to_owned()]);
    fleet.api.spawn().unwrap();

    let operator = pki.issue_client(&subject("dana", operators)).unwrap();
    let created = remote_cli(
        &fleet.host("host-c").topology.router,
        &format!("https://172.31.0.2:{PORT}"),
        &operator,
        &pki.ca(),
        &["policy", "create", "apps-to-db", "--statement", APPS_TO_DB],
    );
    assert!(created.status.success(), "{}", text(&created));
    fleet.wait_everywhere(revision_of(&created), Duration::from_secs(30));
    assert!(fleet.works("app-1", "db", 1521));
    assert!(fleet.works("app-2", "db", 1521));
    assert!(!fleet.works("lb", "db", 1521));
    let audit = fleet.api.audit_log();
    assert!(
        audit.contains("\"user\":\"dana\"") && audit.contains("CN=dana"),
        "{audit}"
    );
}
