use super::*;

fn principal(groups: &[&str]) -> Principal {
    Principal {
        user: "alice".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        credential: principal::Credential::Peer {
            uid: 1000,
            gid: 1000,
        },
    }
}

fn policy(source: &str) -> IamPolicy {
    let (statements, _) = IamPolicy::parse("iam.policy", source).unwrap();
    IamPolicy { statements }
}

fn error_text(source: &str) -> String {
    format!("{:#}", IamPolicy::parse("iam.policy", source).unwrap_err())
}

#[test]
fn reference_examples_parse() {
    let source = "\
Allow group SecurityAdmins to manage zpr-policy in tenancy
Allow group SecurityAuditors to read zpr-policy in tenancy
# comments and line breaks do not matter
Allow group app-admin, group ops to manage security-attribute-namespace
  in tenancy where target.security-attribute-namespace.name = 'applications'
allow group SecurityAdmins to manage zpr-configuration in tenancy
Allow any-user to inspect zpr-family in tenancy
";
    let (statements, warnings) = IamPolicy::parse("iam.policy", source).unwrap();
    assert_eq!(statements.len(), 5);
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(
        statements[2].subject,
        Subject::Groups(vec!["app-admin".into(), "ops".into()])
    );
    assert_eq!(
        statements[2].condition,
        Some(Condition::NamespaceName {
            equal: true,
            namespace: "applications".into()
        })
    );
}

#[test]
fn doc_isms_are_warnings() {
    let (statements, warnings) = IamPolicy::parse(
        "iam.policy",
        "Allow UserGroupA to use security-attribute-namespace where target.security-attribute-namespace.name='public'",
    )
    .unwrap();
    assert_eq!(
        statements[0].subject,
        Subject::Groups(vec!["UserGroupA".into()])
    );
    assert!(
        warnings.contains("'UserGroupA' is read as 'group UserGroupA'"),
        "{warnings}"
    );
    assert!(
        warnings.contains("no location: read as 'in tenancy'"),
        "{warnings}"
    );
}

#[test]
fn mistakes_point_at_the_word_and_suggest() {
    let text = error_text("Allow group admins to mange zpr-policy in tenancy\n");
    assert!(
        text.contains("error: expected a verb (inspect, read, use or manage), found 'mange'"),
        "{text}"
    );
    assert!(text.contains("--> iam.policy:1:23"), "{text}");
    assert!(text.contains("|                       ^^^^^"), "{text}");
    assert!(text.contains("help: did you mean 'manage'?"), "{text}");

    let text = error_text("Allow group admins to read zpr-polcy in tenancy");
    assert!(text.contains("did you mean 'zpr-policy'?"), "{text}");
    let text = error_text("Allow group a to use zpr-security-attribute in tenancy");
    assert!(text.contains("guarded by their namespace"), "{text}");
    let text = error_text("Allow group a to use zpr-policy in compartment x");
    assert!(text.contains("zpr has no compartments"), "{text}");
    let text =
        error_text("Allow group a to use zpr-policy in tenancy where target.namespace.name = 'x'");
    assert!(
        text.contains("expected target.security-attribute-namespace.name"),
        "{text}"
    );
    let text = error_text(
        "Allow group a to use zpr-policy in tenancy where target.security-attribute-namespace.name = x",
    );
    assert!(text.contains("quote it: 'x'"), "{text}");
    let text = error_text("Allow group a to");
    assert!(text.contains("the statement ends before a verb"), "{text}");
    let text = error_text("Alow group a to read zpr-policy in tenancy");
    assert!(text.contains("did you mean 'Allow'?"), "{text}");
    // Every statement is checked, not only the first.
    let text = error_text("Allow group a to mange zpr-policy\nAllow group b to read zpr-polcy\n");
    assert!(text.contains("2 error(s)"), "{text}");
    assert!(text.contains("iam.policy:2:"), "{text}");
}

#[test]
fn grants_follow_groups_verbs_and_conditions() {
    let iam = policy(
        "Allow group auditors to read zpr-policy in tenancy
         Allow group app-admin to manage security-attribute-namespace in tenancy where target.security-attribute-namespace.name = 'applications'
         Allow group everyone-but to use security-attribute-namespace in tenancy where target.security-attribute-namespace.name != 'secret'",
    );
    let auditor = principal(&["alice", "auditors"]);
    assert!(iam.allows(&auditor, Permission::ZprPolicyInspect, None));
    assert!(iam.allows(&auditor, Permission::ZprPolicyRead, None));
    assert!(!iam.allows(&auditor, Permission::ZprPolicyUpdate, None));
    assert!(!iam.allows(&auditor, Permission::ZprConfigurationRead, None));

    let app_admin = principal(&["app-admin"]);
    let create = Permission::SecurityAttributeNamespaceCreate;
    assert!(iam.allows(&app_admin, create, Some("applications")));
    assert!(iam.allows(&app_admin, create, Some("Applications")));
    assert!(!iam.allows(&app_admin, create, Some("database")));
    assert!(!iam.allows(&app_admin, create, None));

    let others = principal(&["everyone-but"]);
    let apply = Permission::SecurityAttributeNamespaceUse;
    assert!(iam.allows(&others, apply, Some("public")));
    assert!(!iam.allows(&others, apply, Some("secret")));
    assert!(!iam.allows(&principal(&["root"]), Permission::ZprPolicyInspect, None));
}

#[test]
fn families_and_bootstrap_admin() {
    let iam = policy("Allow group ops to read zpr-family in tenancy");
    let ops = principal(&["ops"]);
    assert!(iam.allows(&ops, Permission::ZprConfigurationRead, None));
    assert!(iam.allows(&ops, Permission::SecurityAttributeNamespaceRead, Some("x")));
    assert!(!iam.allows(&ops, Permission::ZprPolicyUpdate, None));

    let admin = IamPolicy {
        statements: vec![Statement::admin("zpr-admins")],
    };
    let admins = principal(&["zpr-admins"]);
    assert!(admin.allows(&admins, Permission::ZprPolicyDelete, None));
    assert!(admin.allows(
        &admins,
        Permission::SecurityAttributeNamespaceMove,
        Some("x")
    ));
}
