use std::path::{Path, PathBuf};

use super::*;

/// A store in a fresh temporary directory, removed on drop.
struct TempStore {
    directory: PathBuf,
    store: Store,
}

impl TempStore {
    fn seeded() -> TempStore {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!("zpr-store-{}-{n}", std::process::id()));
        let mut store = Store::open(&directory.join("zpr.db")).unwrap();
        let inventory =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier/inventory.yaml");
        assert!(store.seed(&inventory).unwrap());
        assert!(
            !store.seed(&inventory).unwrap(),
            "a seeded store is seeded once"
        );
        TempStore { directory, store }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

const OPEN_LB: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

fn statements(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[test]
fn seeded_store_loads_like_the_file() {
    let t = TempStore::seeded();
    let loaded = t.store.load().unwrap();
    let inputs = loaded.inputs.expect(&loaded.report);
    let endpoint = inputs.inventory.endpoint("app-1").unwrap();
    assert_eq!(endpoint.interface.as_deref(), Some("zpr-app1"));
    assert_eq!(endpoint.attributes.len(), 1);
    assert_eq!(inputs.inventory.namespaces()[0].attributes.len(), 4);
}

#[test]
fn policies_are_checked_in_a_transaction_and_rolled_back() {
    let mut t = TempStore::seeded();
    let transaction = t.store.transaction().unwrap();
    create_policy(
        &transaction,
        "web",
        "",
        &statements(&[OPEN_LB, "allow nonsense"]),
    )
    .unwrap();
    let loaded = load(&transaction).unwrap();
    assert!(loaded.inputs.is_none());
    assert!(loaded.report.contains("--> web:2:"), "{}", loaded.report);
    drop(transaction);
    assert!(list_policies(t.store.connection()).unwrap().is_empty());

    let transaction = t.store.transaction().unwrap();
    let policy = create_policy(&transaction, "web", "front door", &statements(&[OPEN_LB])).unwrap();
    transaction.commit().unwrap();
    let loaded = t.store.load().unwrap();
    let inputs = loaded.inputs.expect(&loaded.report);
    assert_eq!(inputs.policies[0].name, "web");
    assert_eq!(
        get_policy(t.store.connection(), "web").unwrap().id,
        policy.id
    );
    let again = create_policy(t.store.connection(), "web", "", &[]).unwrap_err();
    assert_eq!(
        again.downcast_ref::<Refusal>().unwrap().kind,
        RefusalKind::Conflict
    );
    let bad_name = create_policy(t.store.connection(), "a/b", "", &[]).unwrap_err();
    assert_eq!(
        bad_name.downcast_ref::<Refusal>().unwrap().kind,
        RefusalKind::Invalid
    );
}

#[test]
fn namespaces_retire_and_cascade_delete() {
    let t = TempStore::seeded();
    let connection = t.store.connection();
    create_namespace(connection, "apps2", "").unwrap();
    create_attribute(
        connection,
        "apps2",
        "tier",
        "",
        Some(&Validator::values(vec!["web".into()])),
    )
    .unwrap();
    apply_attribute(connection, "app-1", "apps2.tier:web", "apps2").unwrap();
    assert!(t.store.load().unwrap().inputs.is_some());

    update_namespace(connection, "apps2", None, Some(true)).unwrap();
    let retired = apply_attribute(connection, "app-2", "apps2.tier:web", "apps2").unwrap_err();
    assert!(retired.to_string().contains("retired"), "{retired}");
    update_namespace(connection, "apps2", None, Some(false)).unwrap();

    let refused = delete_namespace(connection, "apps2", false).unwrap_err();
    assert_eq!(
        refused.downcast_ref::<Refusal>().unwrap().kind,
        RefusalKind::Conflict
    );
    delete_namespace(connection, "apps2", true).unwrap();
    assert!(
        get_endpoint(connection, "app-1")
            .unwrap()
            .security_attributes
            == ["ocvtc002.apps:server"]
    );
    assert!(t.store.load().unwrap().inputs.is_some());
}

#[test]
fn disabled_zpr_audits_every_endpoint() {
    let t = TempStore::seeded();
    set_zpr_status(t.store.connection(), "DISABLED").unwrap();
    let inputs = t.store.load().unwrap().inputs.unwrap();
    assert!(
        inputs
            .inventory
            .endpoints()
            .iter()
            .all(|e| e.mode == crate::inventory::Mode::Audit)
    );
    assert!(set_zpr_status(t.store.connection(), "off").is_err());
}
