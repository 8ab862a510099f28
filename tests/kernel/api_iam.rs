//! Who may do what through the management API: a table of (principal,
//! operation) -> allowed or denied under one set of IAM statements, run
//! through the real socket by processes of real OS users (created here,
//! removed after). It covers each verb of zpr-policy, zpr-configuration
//! and security-attribute-namespace, the namespace-name condition, `use`
//! for tagging endpoints, work-request visibility, root being nobody
//! special, and the audit log.

use serde_json::Value;
use zpr_tests::{Netns, os_users::TestUser, served_agent::ServedAgent, three_tier::example};

const STATEMENT: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

struct Users {
    admin: TestUser,
    inspector: TestUser,
    reader: TestUser,
    user: TestUser,
    configurer: TestUser,
    namespace_admin: TestUser,
    tagger: TestUser,
}

impl Users {
    fn create() -> anyhow::Result<Users> {
        Ok(Users {
            admin: TestUser::create("zad")?,
            inspector: TestUser::create("zin")?,
            reader: TestUser::create("zre")?,
            user: TestUser::create("zus")?,
            configurer: TestUser::create("zco")?,
            namespace_admin: TestUser::create("zna")?,
            tagger: TestUser::create("zta")?,
        })
    }

    fn statements(&self) -> String {
        format!(
            "Allow group {} to inspect zpr-policy in tenancy
             Allow group {} to read zpr-policy in tenancy
             Allow group {} to use zpr-policy in tenancy
             Allow group {} to use zpr-configuration in tenancy
             Allow group {} to manage security-attribute-namespace in tenancy
                 where target.security-attribute-namespace.name = 'applications'
             Allow group {} to use security-attribute-namespace in tenancy
                 where target.security-attribute-namespace.name = 'ocvtc002'
             ",
            self.inspector.name,
            self.reader.name,
            self.user.name,
            self.configurer.name,
            self.namespace_admin.name,
            self.tagger.name
        )
    }
}

/// What a call is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    /// Refused with 403 naming this permission.
    Denied(&'static str),
}
use Expect::*;

/// Runs `zpr ARGS --output json` as `user`; checks the outcome.
fn check(
    agent: &ServedAgent,
    user: Option<&TestUser>,
    arguments: &[&str],
    expect: Expect,
) -> Value {
    let mut arguments = arguments.to_vec();
    arguments.extend(["--output", "json"]);
    let output = agent
        .cli(user.map(|u| u.name.as_str()), &arguments)
        .expect("running zpr");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let who = user.map_or("root", |u| u.name.as_str());
    match expect {
        Allowed => assert!(
            output.status.success(),
            "{who}: zpr {arguments:?} should be allowed: {answer}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Denied(permission) => {
            assert_eq!(
                output.status.code(),
                Some(1),
                "{who}: zpr {arguments:?}: {answer}"
            );
            assert_eq!(
                answer["code"], "NotAuthorized",
                "{who}: zpr {arguments:?}: {answer}"
            );
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(permission) && message.contains(who),
                "{who}: zpr {arguments:?}: the 403 names {permission}: {message}"
            );
        }
    }
    answer
}

#[test]
fn permission_table_through_the_socket() -> anyhow::Result<()> {
    let users = Users::create()?;
    let netns = Netns::new()?;
    let agent = ServedAgent::start(
        &netns,
        &example("inventory.yaml"),
        &users.statements(),
        &users.admin.name,
    )?;
    let Users {
        admin,
        inspector,
        reader,
        user,
        configurer,
        namespace_admin: ns_admin,
        tagger,
    } = &users;
    let (admin, inspector, reader, user, configurer, ns_admin, tagger) = (
        Some(admin),
        Some(inspector),
        Some(reader),
        Some(user),
        Some(configurer),
        Some(ns_admin),
        Some(tagger),
    );

    // zpr-policy: inspect < read < use < manage.
    let create = ["policy", "create", "p1", "--statement", STATEMENT];
    check(&agent, user, &create, Denied("ZPR_POLICY_CREATE"));
    let created = check(&agent, admin, &create, Allowed);
    assert_eq!(created["name"], "p1");
    let listed = check(&agent, inspector, &["policy", "list"], Allowed);
    assert_eq!(listed["items"][0]["name"], "p1");
    check(
        &agent,
        inspector,
        &["policy", "get", "p1"],
        Denied("ZPR_POLICY_READ"),
    );
    check(&agent, reader, &["policy", "get", "p1"], Allowed);
    let update = ["policy", "update", "p1", "--description", "front door"];
    check(&agent, reader, &update, Denied("ZPR_POLICY_UPDATE"));
    check(&agent, user, &update, Allowed);
    check(
        &agent,
        user,
        &["policy", "delete", "p1"],
        Denied("ZPR_POLICY_DELETE"),
    );
    check(
        &agent,
        configurer,
        &["policy", "list"],
        Denied("ZPR_POLICY_INSPECT"),
    );
    // root is nobody special.
    check(
        &agent,
        None,
        &["policy", "list"],
        Denied("ZPR_POLICY_INSPECT"),
    );

    // zpr-configuration: use includes read.
    check(
        &agent,
        reader,
        &["configuration", "get"],
        Denied("ZPR_CONFIGURATION_READ"),
    );
    check(&agent, configurer, &["configuration", "get"], Allowed);
    let disabled = check(&agent, configurer, &["configuration", "disable"], Allowed);
    assert_eq!(disabled["zprStatus"], "DISABLED");
    check(&agent, configurer, &["configuration", "enable"], Allowed);
    check(
        &agent,
        user,
        &["configuration", "enable"],
        Denied("ZPR_CONFIGURATION_UPDATE"),
    );

    // security-attribute-namespace, limited to one namespace by name.
    check(
        &agent,
        ns_admin,
        &["namespace", "create", "applications"],
        Allowed,
    );
    check(
        &agent,
        ns_admin,
        &["namespace", "create", "other"],
        Denied("SECURITY_ATTRIBUTE_NAMESPACE_CREATE"),
    );
    check(&agent, admin, &["namespace", "create", "other"], Allowed);
    let values = ["--values", "web,db"];
    let create_attribute = |namespace| {
        [
            "attribute",
            "create",
            namespace,
            "tier",
            values[0],
            values[1],
        ]
    };
    check(&agent, ns_admin, &create_attribute("applications"), Allowed);
    check(
        &agent,
        ns_admin,
        &create_attribute("other"),
        Denied("SECURITY_ATTRIBUTE_NAMESPACE_UPDATE"),
    );
    check(
        &agent,
        ns_admin,
        &["attribute", "get", "other", "tier"],
        Denied("SECURITY_ATTRIBUTE_NAMESPACE_READ"),
    );
    check(&agent, tagger, &["attribute", "list", "ocvtc002"], Allowed);
    check(
        &agent,
        ns_admin,
        &["namespace", "retire", "applications"],
        Allowed,
    );
    check(
        &agent,
        ns_admin,
        &["namespace", "reactivate", "applications"],
        Allowed,
    );
    // Only the namespaces one may inspect are listed.
    let visible = check(&agent, ns_admin, &["namespace", "list"], Allowed);
    assert_eq!(
        visible["items"].as_array().map(Vec::len),
        Some(1),
        "{visible}"
    );

    // Tagging needs use on the attribute's namespace.
    let tag = ["endpoint", "tag", "app-1", "applications.tier:web"];
    check(
        &agent,
        tagger,
        &tag,
        Denied("SECURITY_ATTRIBUTE_NAMESPACE_USE"),
    );
    let tagged = check(&agent, ns_admin, &tag, Allowed);
    assert_eq!(
        tagged["securityAttributes"][1], "applications.tier:web",
        "{tagged}"
    );
    check(
        &agent,
        tagger,
        &["endpoint", "untag", "app-2", "ocvtc002.apps:server"],
        Allowed,
    );
    let retagged = check(
        &agent,
        tagger,
        &["endpoint", "tag", "app-2", "ocvtc002.apps:server"],
        Allowed,
    );
    let tag_request = agent.audit().last().unwrap()["workRequestId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(retagged["securityAttributes"][0], "ocvtc002.apps:server");
    check(
        &agent,
        reader,
        &["endpoint", "untag", "app-2", "ocvtc002.apps:server"],
        Denied("SECURITY_ATTRIBUTE_NAMESPACE_USE"),
    );
    // Applied attributes hold a namespace back from a plain delete.
    let plain = agent.cli(
        ns_admin.map(|u| u.name.as_str()),
        &["namespace", "delete", "applications"],
    )?;
    assert!(String::from_utf8_lossy(&plain.stderr).contains("Conflict (409)"));
    check(
        &agent,
        ns_admin,
        &["namespace", "delete", "applications", "--cascade"],
        Allowed,
    );

    // Work requests: each sees those of the resources it may read.
    let policy_request = {
        let all = check(&agent, admin, &["work-request", "list"], Allowed);
        let items = all["items"].as_array().unwrap().clone();
        let failed: Vec<&Value> = items.iter().filter(|r| r["status"] == "FAILED").collect();
        assert_eq!(
            failed.len(),
            1,
            "only the refused plain delete failed: {all}"
        );
        assert_eq!(
            failed[0]["operationType"],
            "DeleteSecurityAttributeNamespace"
        );
        assert_eq!(failed[0]["errors"][0]["code"], "Conflict");
        items
            .iter()
            .find(|r| r["operationType"] == "CreateZprPolicy")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    check(
        &agent,
        reader,
        &["work-request", "get", &policy_request],
        Allowed,
    );
    check(
        &agent,
        tagger,
        &["work-request", "get", &policy_request],
        Denied("ZPR_POLICY_READ"),
    );
    let seen = check(&agent, tagger, &["work-request", "list"], Allowed);
    let seen: Vec<&str> = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen.len(),
        2,
        "the tagger sees its ocvtc002 changes only: {seen:?}"
    );
    assert!(seen.contains(&tag_request.as_str()));

    check(&agent, admin, &["policy", "delete", "p1"], Allowed);

    // The audit log has every mutating call, allowed or not.
    let audit = agent.audit();
    let denied: Vec<&Value> = audit.iter().filter(|r| r["allowed"] == false).collect();
    assert_eq!(denied.len(), 8, "{denied:#?}");
    assert!(denied.iter().all(|r| r["outcome"] == "denied"));
    let first = &audit[0];
    assert_eq!(first["operation"], "CreateZprPolicy");
    assert_eq!(first["principal"]["user"], user.unwrap().name);
    let applied = audit.iter().find(|r| r["allowed"] == true).unwrap();
    assert!(applied["generation"].as_u64().unwrap() >= 2, "{applied}");
    Ok(())
}
