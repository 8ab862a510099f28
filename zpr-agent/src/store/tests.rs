use std::path::{Path, PathBuf};

use super::*;

/// A SQLite store in a fresh temporary directory, removed on drop.
struct TempStore {
    directory: PathBuf,
    store: Store,
}

impl TempStore {
    fn empty() -> TempStore {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!("zpr-store-{}-{n}", std::process::id()));
        let store = Store::open_sqlite(&directory.join("zpr.db")).unwrap();
        TempStore { directory, store }
    }

    async fn seeded() -> TempStore {
        let mut t = TempStore::empty();
        assert!(t.store.seed(&three_tier_inventory()).await.unwrap());
        assert!(
            !t.store.seed(&three_tier_inventory()).await.unwrap(),
            "a seeded store is seeded once"
        );
        t
    }

    fn reopen(&mut self) {
        self.store = Store::open_sqlite(&self.directory.join("zpr.db")).unwrap();
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn three_tier_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier/inventory.yaml")
}

pub(super) fn seeded_tenancy() -> Tenancy {
    let text = std::fs::read_to_string(three_tier_inventory()).unwrap();
    let mut tenancy = Tenancy::default();
    seed::import(&mut tenancy, "inventory.yaml", &text).unwrap();
    tenancy
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

const OPEN_LB: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

fn statements(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

fn kind(error: anyhow::Error) -> RefusalKind {
    error.downcast_ref::<Refusal>().unwrap().kind
}

fn inputs_of(tenancy: &Tenancy) -> crate::inputs::Loaded {
    Snapshot {
        tenancy: tenancy.clone(),
        revision: 0,
        cluster: None,
    }
    .inputs(None)
    .unwrap()
}

#[test]
fn seeded_store_loads_like_the_file() {
    block_on(async {
        let t = TempStore::seeded().await;
        let loaded = t.store.read().await.unwrap().inputs(None).unwrap();
        let inputs = loaded.inputs.expect(&loaded.report);
        let endpoint = inputs.inventory.endpoint("app-1").unwrap();
        assert_eq!(endpoint.interface.as_deref(), Some("zpr-app1"));
        assert_eq!(endpoint.attributes.len(), 1);
        assert_eq!(inputs.inventory.namespaces()[0].attributes.len(), 4);
    });
}

#[test]
fn invalid_policies_check_as_files_do_and_valid_ones_are_kept() {
    let mut tenancy = seeded_tenancy();
    let mut broken = tenancy.clone();
    broken
        .create_policy("web", "", &statements(&[OPEN_LB, "allow nonsense"]))
        .unwrap();
    let loaded = inputs_of(&broken);
    assert!(loaded.inputs.is_none());
    assert!(loaded.report.contains("--> web:2:"), "{}", loaded.report);

    let policy = tenancy
        .create_policy("web", "front door", &statements(&[OPEN_LB]))
        .unwrap();
    let loaded = inputs_of(&tenancy);
    let inputs = loaded.inputs.expect(&loaded.report);
    assert_eq!(inputs.policies[0].name, "web");
    assert_eq!(tenancy.get_policy("web").unwrap().id, policy.id);
    let again = tenancy.create_policy("web", "", &[]).unwrap_err();
    assert_eq!(kind(again), RefusalKind::Conflict);
    let bad_name = tenancy.create_policy("a/b", "", &[]).unwrap_err();
    assert_eq!(kind(bad_name), RefusalKind::Invalid);
    let two_lines = tenancy
        .create_policy("two", "", &statements(&["a\nb"]))
        .unwrap_err();
    assert_eq!(kind(two_lines), RefusalKind::Invalid);
}

#[test]
fn namespaces_retire_and_cascade_delete() {
    let mut tenancy = seeded_tenancy();
    tenancy.create_namespace("apps2", "").unwrap();
    tenancy
        .create_attribute(
            "apps2",
            "tier",
            "",
            Some(&Validator::values(vec!["web".into()])),
        )
        .unwrap();
    tenancy.apply_attribute("app-1", "apps2.tier:web").unwrap();
    assert!(inputs_of(&tenancy).inputs.is_some());

    tenancy.update_namespace("APPS2", None, Some(true)).unwrap();
    let retired = tenancy
        .apply_attribute("app-2", "apps2.tier:web")
        .unwrap_err();
    assert!(retired.to_string().contains("retired"), "{retired}");
    tenancy
        .update_namespace("apps2", None, Some(false))
        .unwrap();

    let refused = tenancy.delete_namespace("apps2", false).unwrap_err();
    assert_eq!(kind(refused), RefusalKind::Conflict);
    tenancy.delete_namespace("apps2", true).unwrap();
    assert_eq!(
        tenancy.get_endpoint("app-1").unwrap().security_attributes,
        ["ocvtc002.apps:server"]
    );
    assert!(tenancy.list_attributes("apps2").is_err());
    assert!(inputs_of(&tenancy).inputs.is_some());
}

#[test]
fn disabled_zpr_audits_every_endpoint() {
    let mut tenancy = seeded_tenancy();
    tenancy.set_zpr_status("DISABLED").unwrap();
    let inputs = inputs_of(&tenancy).inputs.unwrap();
    assert!(
        inputs
            .inventory
            .endpoints()
            .iter()
            .all(|e| e.mode == crate::inventory::Mode::Audit)
    );
    assert!(tenancy.set_zpr_status("off").is_err());
}

#[test]
fn endpoints_placed_on_another_node_are_not_attached_there() {
    let mut tenancy = seeded_tenancy();
    Arc::make_mut(tenancy.endpoints.get_mut("app-1").unwrap()).node = Some("host-b".into());
    let interface = |node: Option<&str>| {
        let snapshot = Snapshot {
            tenancy: tenancy.clone(),
            revision: 1,
            cluster: None,
        };
        let inputs = snapshot.inputs(node).unwrap().inputs.unwrap();
        inputs
            .inventory
            .endpoint("app-1")
            .unwrap()
            .interface
            .clone()
    };
    assert_eq!(interface(Some("host-b")).as_deref(), Some("zpr-app1"));
    assert_eq!(interface(Some("host-c")), None);
    assert_eq!(
        interface(None).as_deref(),
        Some("zpr-app1"),
        "without a node name every endpoint is local, as before fleets"
    );
}

#[test]
fn records_round_trip_and_a_change_writes_only_what_changed() {
    let before = seeded_tenancy();
    let records = records::to_records(&before).unwrap();
    let read = records::from_texts(&records);
    assert_eq!(read.unwrap(), before);

    let mut after = before.clone();
    after
        .remove_attribute("app-2", "ocvtc002.apps:server")
        .unwrap();
    let writes = records::writes(&before, &after).unwrap();
    assert!(writes.deletes.is_empty());
    let keys: Vec<&str> = writes.puts.iter().map(|(key, _)| key.as_str()).collect();
    assert!(keys.contains(&"endpoints/app-2"), "{keys:?}");

    let mut deleted = after.clone();
    deleted.delete_namespace("ocvtc002", true).unwrap();
    let writes = records::writes(&after, &deleted).unwrap();
    // The writes turn the records of one state into those of the next,
    // and put no record that was already there as it is.
    let mut created = deleted.clone();
    created
        .create_policy("web", "", &statements(&[OPEN_LB]))
        .unwrap();
    for (from, to) in [(&before, &after), (&after, &deleted), (&deleted, &created)] {
        let writes = records::writes(from, to).unwrap();
        let mut records = records::to_records(from).unwrap();
        for (key, value) in &writes.puts {
            assert_ne!(records.get(key), Some(value), "{key} written unchanged");
            records.insert(key.clone(), value.clone());
        }
        for key in &writes.deletes {
            assert!(records.remove(key).is_some(), "{key} deleted, never there");
        }
        assert_eq!(records, records::to_records(to).unwrap());
    }
    assert!(
        writes
            .deletes
            .iter()
            .any(|key| key.starts_with("attributes/"))
    );
    assert!(
        writes
            .deletes
            .iter()
            .any(|key| key.starts_with("namespaces/"))
    );
}

#[test]
fn a_commit_based_on_an_old_revision_is_refused_and_writes_nothing() {
    block_on(async {
        let mut t = TempStore::seeded().await;
        let base = t.store.read().await.unwrap();
        let mut first = base.tenancy.clone();
        first
            .create_policy("first", "", &statements(&[OPEN_LB]))
            .unwrap();
        let mut second = base.tenancy.clone();
        second
            .create_policy("second", "", &statements(&[OPEN_LB]))
            .unwrap();
        let revision = t.store.commit(&base, &mut first, None).await.unwrap();
        assert_eq!(revision, base.revision + 1);
        let refused = t.store.commit(&base, &mut second, None).await.unwrap_err();
        let conflict = refused.downcast_ref::<Conflict>().unwrap();
        assert_eq!(conflict.current_revision, revision);

        t.reopen();
        let now = t.store.read().await.unwrap();
        assert_eq!(now.revision, revision);
        assert_eq!(
            now.tenancy, first,
            "the first change is kept, nothing of the second"
        );
    });
}

#[test]
fn work_requests_are_kept_beside_the_tenancy_in_order() {
    block_on(async {
        let mut t = TempStore::seeded().await;
        let base = t.store.read().await.unwrap();
        let request = |n: u64| WorkRequest {
            id: format!("ocid1.zprworkrequest.zpr.{n}"),
            operation_type: "CreateZprPolicy".into(),
            status: "SUCCEEDED".into(),
            resource_type: "zpr-policy".into(),
            namespace: None,
            resource: "web".into(),
            principal: "user root".into(),
            revision: None,
            generation: None,
            percent_complete: 100.0,
            errors: Vec::new(),
            logs: Vec::new(),
            time_accepted: 0,
            time_finished: 0,
        };
        t.store
            .commit(&base, &mut base.tenancy.clone(), Some(&request(10)))
            .await
            .unwrap();
        t.store.put_work_request(&request(9)).await.unwrap();
        let ids: Vec<String> = t
            .store
            .work_requests()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            ["ocid1.zprworkrequest.zpr.9", "ocid1.zprworkrequest.zpr.10"]
        );
        assert_eq!(t.store.read().await.unwrap().tenancy, base.tenancy);
        let missing = t.store.work_request("nope").await.unwrap_err();
        assert_eq!(kind(missing), RefusalKind::NotFound);
    });
}

/// A store written by a zpr of the table-per-resource layout.
const LEGACY_STORE: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE policy (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '',
    statements TEXT NOT NULL, time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL);
CREATE TABLE namespace (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '', is_retired INTEGER NOT NULL DEFAULT 0, time_created INTEGER NOT NULL);
CREATE TABLE attribute (id TEXT PRIMARY KEY, namespace_id TEXT NOT NULL, name TEXT NOT NULL COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '', allowed_values TEXT, time_created INTEGER NOT NULL);
CREATE TABLE vcn (name TEXT PRIMARY KEY, cidrs TEXT NOT NULL, security_attribute TEXT);
CREATE TABLE endpoint (name TEXT PRIMARY KEY, vcn TEXT NOT NULL, addresses TEXT NOT NULL, interface TEXT,
    mode TEXT NOT NULL DEFAULT 'enforce');
CREATE TABLE endpoint_attribute (endpoint TEXT NOT NULL, attribute TEXT NOT NULL, namespace TEXT NOT NULL,
    PRIMARY KEY (endpoint, attribute));
CREATE TABLE work_request (id TEXT PRIMARY KEY, operation TEXT NOT NULL, resource_type TEXT NOT NULL,
    namespace TEXT, resource TEXT NOT NULL, status TEXT NOT NULL, principal TEXT NOT NULL, generation INTEGER,
    errors TEXT NOT NULL, logs TEXT NOT NULL, time_accepted INTEGER NOT NULL, time_finished INTEGER NOT NULL);
INSERT INTO meta VALUES ('next-id', '4'), ('zpr-status', 'DISABLED');
INSERT INTO namespace VALUES ('ocid1.securityattributenamespace.zpr.1', 'apps', '', 0, 1);
INSERT INTO attribute VALUES ('ocid1.securityattribute.zpr.2', 'ocid1.securityattributenamespace.zpr.1',
    'tier', '', '[\"web\"]', 1);
INSERT INTO vcn VALUES ('prod', '[\"10.0.0.0/16\"]', 'apps.tier:web');
INSERT INTO endpoint VALUES ('web-1', 'prod', '[\"10.0.0.5\"]', 'veth-web1', 'enforce');
INSERT INTO endpoint_attribute VALUES ('web-1', 'apps.tier:web', 'apps');
INSERT INTO policy VALUES ('ocid1.zprpolicy.zpr.3', 'web', 'd', '[\"In apps.tier:web VCN allow apps.tier:web endpoints to connect to apps.tier:web endpoints with protocol=''tcp/80''\"]', 1, 2);
INSERT INTO work_request VALUES ('ocid1.zprworkrequest.zpr.5', 'CreateZprPolicy', 'zpr-policy', NULL, 'web',
    'SUCCEEDED', 'user root', 1, '[]', '[]', 1, 1);
";

#[test]
fn a_store_of_the_earlier_layout_is_converted_with_everything_in_it() {
    block_on(async {
        let t = TempStore::empty();
        let path = t.directory.join("legacy.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(LEGACY_STORE)
            .unwrap();
        let store = Store::open_sqlite(&path).unwrap();
        let snapshot = store.read().await.unwrap();
        let tenancy = &snapshot.tenancy;
        assert_eq!(tenancy.get_policy("web").unwrap().statements.len(), 1);
        assert_eq!(tenancy.configuration.zpr_status, "DISABLED");
        assert_eq!(
            tenancy.get_endpoint("web-1").unwrap().security_attributes,
            ["apps.tier:web"]
        );
        assert_eq!(
            tenancy.get_attribute("apps", "tier").unwrap().validator,
            Some(Validator::values(vec!["web".into()]))
        );
        assert_eq!(tenancy.next_id, 4);
        assert_eq!(store.work_requests().await.unwrap().len(), 1);
        let loaded = snapshot.inputs(None).unwrap();
        assert!(loaded.inputs.is_some(), "{}", loaded.report);
        drop(store);
        let again = Store::open_sqlite(&path).unwrap().read().await.unwrap();
        assert_eq!(again, snapshot, "converted once");
    });
}

#[test]
fn a_seed_goes_in_steps_within_etcds_limits_what_others_refer_to_first() {
    let seeded = seeded_tenancy();
    let writes = records::writes(&Tenancy::default(), &seeded).unwrap();
    let total = writes.len();
    let steps = writes.in_steps(3);
    assert!(steps.iter().all(|step| step.len() <= 3));
    assert_eq!(steps.iter().map(records::Writes::len).sum::<usize>(), total);
    let order: Vec<&str> = steps
        .iter()
        .flat_map(|step| &step.puts)
        .map(|(key, _)| key.as_str())
        .collect();
    let first_endpoint = order
        .iter()
        .position(|k| k.starts_with("endpoints/"))
        .unwrap();
    let last_attribute = order
        .iter()
        .rposition(|k| k.starts_with("attributes/"))
        .unwrap();
    assert!(last_attribute < first_endpoint, "{order:?}");
}

#[test]
fn a_seed_that_stopped_halfway_is_completed_by_the_next_start() {
    block_on(async {
        let mut t = TempStore::empty();
        let whole = seeded_tenancy();
        let steps = records::writes(&Tenancy::default(), &whole)
            .unwrap()
            .in_steps(3);
        let mut revision = 0;
        // Everything but the last step: some endpoints, not `next-id`.
        for step in &steps[..steps.len() - 1] {
            revision = t.store.commit_writes(revision, step).await.unwrap();
        }
        let partial = t.store.read().await.unwrap().tenancy;
        assert!(!partial.endpoints.is_empty(), "{partial:#?}");
        assert!(partial.endpoints.len() < whole.endpoints.len());

        assert!(t.store.seed(&three_tier_inventory()).await.unwrap());
        let completed = t.store.read().await.unwrap().tenancy;
        assert_eq!(completed.endpoints, whole.endpoints);
        assert_eq!(completed.attributes, whole.attributes);
        assert!(
            !t.store.seed(&three_tier_inventory()).await.unwrap(),
            "a whole seed is not imported again"
        );
    });
}

#[test]
fn a_seed_inventory_that_is_an_alias_bomb_is_refused_and_nothing_stored() {
    block_on(async {
        let mut t = TempStore::empty();
        let bomb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/alias-bomb.yaml");
        let error = format!("{:#}", t.store.seed(&bomb).await.unwrap_err());
        assert!(error.contains("YAML aliases"), "{error}");
        let tenancy = t.store.read().await.unwrap().tenancy;
        assert_eq!((tenancy.next_id, tenancy.endpoints.len()), (0, 0));
    });
}

#[test]
fn a_seed_onto_a_tenancy_that_lost_next_id_is_refused_and_deletes_nothing() {
    block_on(async {
        let mut t = TempStore::seeded().await;
        let base = t.store.read().await.unwrap();
        assert!(
            base.tenancy.tenancy_id.is_some(),
            "the seed drew a tenancy id"
        );
        let mut after = base.tenancy.clone();
        after
            .create_policy("open-lb", "", &statements(&[OPEN_LB]))
            .unwrap();
        t.store.commit(&base, &mut after, None).await.unwrap();
        let with_policy = t.store.read().await.unwrap();
        let lost = records::Writes {
            puts: Vec::new(),
            deletes: vec![records::NEXT_ID.to_owned()],
        };
        t.store
            .commit_writes(with_policy.revision, &lost)
            .await
            .unwrap();

        let error = t.store.seed(&three_tier_inventory()).await.unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("never wiped"), "{error}");
        assert!(error.contains("policies/"), "names what differs: {error}");
        let kept = t.store.read().await.unwrap().tenancy;
        assert_eq!(kept.policies, with_policy.tenancy.policies);
        assert_eq!(kept.endpoints, with_policy.tenancy.endpoints);
    });
}

#[test]
fn records_that_do_not_read_are_named_with_why() {
    let good = records::to_records(&seeded_tenancy()).unwrap();
    let endpoint = good.keys().find(|k| k.starts_with("endpoints/")).unwrap();
    let raw = |edit: &dyn Fn(&mut records::RawRecords)| {
        let mut raw: records::RawRecords = good
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        edit(&mut raw);
        records::from_raw(&raw)
    };
    assert_eq!(raw(&|_| {}).unwrap(), seeded_tenancy());
    type Edit<'a> = &'a dyn Fn(&mut records::RawRecords);
    let cases: [(Edit, &str); 6] = [
        (
            &|raw| {
                let policy = br#"{"id":"p","name":"p","description":"","statements":["allow 'a' to connect to 'b'\nallow 'c' to connect to 'd'"],"lifecycleState":"ACTIVE","timeCreated":0,"timeUpdated":0}"#;
                raw.insert(b"policies/p".to_vec(), policy.to_vec());
            },
            "contains a line break",
        ),
        (
            &|raw| {
                let value = raw.get_mut(endpoint.as_bytes()).unwrap();
                let at = value.len() / 2;
                value[at] = 0xff;
            },
            "is not UTF-8",
        ),
        (
            &|raw| drop(raw.insert(b"policies/x".to_vec(), b"{\"id\":".to_vec())),
            "EOF",
        ),
        (
            &|raw| drop(raw.insert(b"unheard-of".to_vec(), b"{}".to_vec())),
            "no record of that name",
        ),
        (
            &|raw| {
                let value = raw.remove(endpoint.as_bytes()).unwrap();
                raw.insert(b"endpoints/someone-else".to_vec(), value);
            },
            "its value names",
        ),
        (
            &|raw| {
                let value = raw.get_mut(endpoint.as_bytes()).unwrap();
                value.pop();
                value.extend_from_slice(b",\"extra\":1}");
            },
            "unknown field",
        ),
    ];
    for (edit, why) in cases {
        let error = raw(edit).unwrap_err().to_string();
        assert!(error.contains(why), "{why}: {error}");
        assert!(error.contains("the live policy stays"), "{error}");
    }
    // Work requests and audit records are beside the tenancy: not read.
    assert!(raw(&|raw| drop(raw.insert(b"work-requests/x".to_vec(), vec![0xff]))).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// A tenancy read record by record as a watch delivers them, or
    /// relisted reading only the records that changed, is the tenancy a
    /// list of the same records reads, at every step, bad records (which
    /// one is named first) included.
    #[test]
    fn records_read_one_at_a_time_are_the_records_read_whole(
        events in proptest::collection::vec((0usize..64, 0usize..12, proptest::bool::ANY), 1..40),
    ) {
        let mut seeded = seeded_tenancy();
        // Every part away from its default, so a part a deletion left
        // behind shows.
        seeded.tenancy_id = Some("t".to_owned());
        seeded.osn_services = vec!["192.0.2.0/24".to_owned()];
        seeded.configuration.zpr_status = "DISABLED".to_owned();
        seeded.create_policy("p", "", &statements(&[OPEN_LB])).unwrap();
        let good: Vec<(Vec<u8>, Vec<u8>)> = records::to_records(&seeded)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
            .collect();
        let mut keys: Vec<Vec<u8>> = good.iter().map(|(k, _)| k.clone()).collect();
        keys.extend([
            b"policies/x".to_vec(),
            b"unheard-of".to_vec(),
            b"work-requests/x".to_vec(),
            b"endpoints/\xff".to_vec(),
            vec![b'p', 0xff],
        ]);
        let mut raw = records::RawRecords::new();
        let mut one_at_a_time = records::TenancyRecords::default();
        // Read as a store's whole list is, again and again.
        let mut relisted = records::TenancyRecords::default();
        for (key, kind, put) in events {
            let key = &keys[key % keys.len()];
            if !put {
                raw.remove(key);
                one_at_a_time.delete(key);
            } else {
                let own = good.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                let value = match kind {
                    // Another record's value: it names another resource.
                    8 => good[key.len() % good.len()].1.clone(),
                    9 => b"{\"id\":".to_vec(),
                    10 => vec![b'"', 0xff, b'"'],
                    11 => b"null".to_vec(),
                    _ => own.unwrap_or_else(|| b"{}".to_vec()),
                };
                raw.insert(key.clone(), value.clone());
                one_at_a_time.put(key, &value);
            }
            proptest::prop_assert_eq!(one_at_a_time.tenancy(), records::from_raw(&raw));
            relisted.relist(&raw);
            proptest::prop_assert_eq!(relisted.tenancy(), records::from_raw(&raw));
        }
    }
}

#[test]
fn a_change_that_unprotects_most_of_a_node_is_named() {
    let mut before = seeded_tenancy();
    for (name, node) in [("app-1", "hv-1"), ("app-2", "hv-1"), ("db", "hv-2")] {
        Arc::make_mut(before.endpoints.get_mut(name).unwrap()).node = Some(node.into());
    }
    let mut one = before.clone();
    one.remove_attribute("app-1", "ocvtc002.apps:server")
        .unwrap();
    assert!(before.unprotects(&one).is_empty(), "1 of 2 is not most");
    let mut both = one.clone();
    both.remove_attribute("app-2", "ocvtc002.apps:server")
        .unwrap();
    let lines = before.unprotects(&both);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, "hv-1");
    assert!(lines[0].1.contains("2 of the 2"), "{lines:?}");
    let mut disabled = before.clone();
    disabled.set_zpr_status("DISABLED").unwrap();
    assert_eq!(
        before.unprotects(&disabled).len(),
        2,
        "audit mode everywhere"
    );
    assert!(Tenancy::default().unprotects(&before).is_empty());
}

#[test]
fn signed_states_verify_and_tampered_replayed_or_untrusted_ones_do_not() {
    let directory = std::env::temp_dir().join(format!("zpr-keys-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let (first, second) = (directory.join("first"), directory.join("second"));
    signing::generate(&first).unwrap();
    signing::generate(&second).unwrap();
    assert!(
        signing::generate(&first).is_err(),
        "a key is never overwritten"
    );
    let signer = signing::Signer::read(&directory.join("first.key")).unwrap();
    let trusted = signing::TrustedKeys::read(&directory.join("first.pub")).unwrap();

    let base = seeded_tenancy();
    let mut one = base.clone();
    signer.sign(&base, &mut one).unwrap();
    assert_eq!(trusted.refuse(&one, None), None);
    assert!(
        trusted
            .refuse(&base, None)
            .unwrap()
            .contains("no signature")
    );
    let mut two = one.clone();
    two.create_policy("open-lb", "", &statements(&[OPEN_LB]))
        .unwrap();
    signer.sign(&one, &mut two).unwrap();
    let (first_signed, second_signed) = (one.signature.as_ref(), two.signature.as_ref());
    assert_eq!(second_signed.unwrap().sequence, 2);
    assert_eq!(
        second_signed.unwrap().previous,
        first_signed.unwrap().digest
    );
    assert_eq!(trusted.refuse(&two, first_signed), None);

    // Written behind the API's back: the records are not what was signed.
    let mut forged = two.clone();
    Arc::make_mut(forged.endpoints.get_mut("db").unwrap()).mode = "audit".into();
    assert!(
        trusted
            .refuse(&forged, None)
            .unwrap()
            .contains("behind the API's back")
    );
    // An older signed state replayed over a later one.
    assert!(
        trusted
            .refuse(&one, second_signed)
            .unwrap()
            .contains("rollback")
    );
    // Signed, by a key not trusted here.
    let other = signing::Signer::read(&directory.join("second.key")).unwrap();
    let mut by_other = one.clone();
    other.sign(&one, &mut by_other).unwrap();
    assert!(
        trusted
            .refuse(&by_other, None)
            .unwrap()
            .contains("not trusted")
    );
    // A signature that does not verify.
    let mut bad = two.clone();
    bad.signature.as_mut().unwrap().sequence = 9;
    assert!(
        trusted
            .refuse(&bad, None)
            .unwrap()
            .contains("does not verify")
    );
    // A key others may read is refused.
    use std::os::unix::fs::PermissionsExt as _;
    let key = directory.join("first.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(signing::Signer::read(&key).is_err());
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn records_come_in_key_order_and_digests_hash_exactly_them() {
    let mut tenancy = seeded_tenancy();
    tenancy.tenancy_id = Some("t-1".to_owned());
    tenancy.confirmation = Some(Confirmation {
        principal: "root".to_owned(),
        operation: "DeleteZprPolicy".to_owned(),
        time: 1,
        nodes: vec!["hv-1".to_owned()],
        digest: "d".to_owned(),
    });
    tenancy.signature = Some(signing::StateSignature {
        key_id: "k".to_owned(),
        sequence: 1,
        previous: String::new(),
        digest: "d".to_owned(),
        signature: "s".to_owned(),
    });
    struct Keys(Vec<String>);
    impl records::RecordSink for Keys {
        fn put<T: serde::Serialize>(&mut self, key: &str, _: &T) -> anyhow::Result<()> {
            self.0.push(key.to_owned());
            Ok(())
        }
    }
    let mut keys = Keys(Vec::new());
    records::write_records(&tenancy, &mut keys).unwrap();
    let mut sorted = keys.0.clone();
    sorted.sort();
    assert_eq!(keys.0, sorted, "a digest would depend on write order");
    assert!(keys.0.len() > 10, "{:?}", keys.0);

    // The digest is SHA-256 over "key\0value\0" of the sorted records.
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for (key, value) in records::to_records(&tenancy).unwrap() {
        if key != records::SIGNATURE {
            hasher.update(format!("{key}\0{value}\0"));
        }
    }
    assert_eq!(
        tenancy.signed_digest().unwrap(),
        signing::to_hex(&hasher.finalize())
    );
}

#[test]
fn endpoints_list_in_pages_and_by_filter() {
    let tenancy = seeded_tenancy();
    let all = EndpointFilter::default();
    let names = |page: Vec<Endpoint>| -> Vec<String> { page.into_iter().map(|e| e.name).collect() };
    assert_eq!(
        names(tenancy.list_endpoints(&all, None, 2)),
        ["app-1", "app-2"]
    );
    assert_eq!(
        names(tenancy.list_endpoints(&all, Some("app-2"), 2)),
        ["db", "lb"]
    );
    assert!(tenancy.list_endpoints(&all, Some("lb"), 2).is_empty());
    let backend = EndpointFilter {
        vcn: Some("backend-vcn".to_owned()),
        ..EndpointFilter::default()
    };
    assert_eq!(names(tenancy.list_endpoints(&backend, None, 10)), ["db"]);
    let servers = EndpointFilter {
        attribute: Some("ocvtc002.apps:server".to_owned()),
        ..EndpointFilter::default()
    };
    assert_eq!(
        names(tenancy.list_endpoints(&servers, None, 10)),
        ["app-1", "app-2"]
    );
    let placed = EndpointFilter {
        node: Some("hv-9".to_owned()),
        ..EndpointFilter::default()
    };
    assert!(tenancy.list_endpoints(&placed, None, 10).is_empty());
}

#[test]
fn a_vcn_holding_endpoints_is_not_deleted() {
    let mut tenancy = seeded_tenancy();
    let error = tenancy.delete_vcn("backend-vcn").unwrap_err().to_string();
    assert!(error.contains("still holds endpoints db"), "{error}");
    tenancy.delete_endpoint("db").unwrap();
    tenancy.delete_vcn("backend-vcn").unwrap();
    assert!(tenancy.get_vcn("backend-vcn").is_err());
}

/// A snapshot checker that keeps the last inventory text checks each state
/// of a tenancy as a fresh check does: a change to an endpoint, a VCN, the
/// configuration or the node reading it makes the text again, a change to
/// policies alone reuses it.
#[test]
fn a_snapshot_checker_reads_each_state_as_a_fresh_check_does() {
    let mut checker = SnapshotChecker::new(Checker::remembering(crate::compile::Tables::Every));
    let mut tenancy = seeded_tenancy();
    let policy = tenancy
        .create_policy("web", "", &statements(&[OPEN_LB]))
        .unwrap();
    let policy_id = policy.id.clone();
    let mut states: Vec<(&str, Tenancy, Option<&str>)> = vec![("seeded", tenancy.clone(), None)];
    Arc::make_mut(tenancy.policies.get_mut(&policy_id).unwrap())
        .statements
        .push(OPEN_LB.replace("tcp/80", "tcp/8080"));
    states.push(("a statement added", tenancy.clone(), None));
    Arc::make_mut(tenancy.endpoints.get_mut("app-1").unwrap())
        .security_attributes
        .clear();
    states.push(("an endpoint untagged", tenancy.clone(), None));
    Arc::make_mut(tenancy.endpoints.get_mut("app-1").unwrap()).node = Some("host-b".into());
    states.push(("an endpoint placed", tenancy.clone(), None));
    states.push(("read by another node", tenancy.clone(), Some("host-c")));
    states.push(("read by its node", tenancy.clone(), Some("host-b")));
    tenancy.configuration.zpr_status = "DISABLED".into();
    states.push(("ZPR disabled", tenancy.clone(), Some("host-b")));
    tenancy
        .vcns
        .values_mut()
        .next()
        .unwrap()
        .cidrs
        .push("10.99.0.0/16".into());
    states.push(("a VCN grown", tenancy.clone(), Some("host-b")));
    for (what, tenancy, node) in &states {
        let kept = checker.check(tenancy, *node).unwrap();
        let fresh = SnapshotChecker::new(Checker::once())
            .check(tenancy, *node)
            .unwrap();
        assert_eq!(kept.report, fresh.report, "{what}");
        let (kept, fresh) = (kept.inputs.unwrap(), fresh.inputs.unwrap());
        assert!(kept.plan == fresh.plan, "{what}: the Plans differ");
        assert!(
            kept.inventory == fresh.inventory,
            "{what}: the inventories differ"
        );
    }
}
