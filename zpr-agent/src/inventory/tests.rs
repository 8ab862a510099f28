use super::*;

const NAMESPACES: &str = "
namespaces:
  - name: ocvtc002
    attributes:
      - { key: networks, type: list, values: [front-end, back-end] }
      - { key: lb, type: list, values: [frontend] }
      - { key: apps, type: list, values: [server] }
      - { key: db, type: list, values: [customer-db] }
      - { key: owner, type: freeform }
";

fn inventory(rest: &str) -> Result<Inventory, Vec<String>> {
    Inventory::from_yaml_str(&format!("{NAMESPACES}{rest}"))
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
}

fn errors(rest: &str) -> Vec<String> {
    match inventory(rest) {
        Ok(_) => panic!("accepted:\n{rest}"),
        Err(errors) => errors,
    }
}

fn attribute(text: &str) -> Attribute {
    let (name, value) = text.split_once(':').unwrap();
    let (namespace, key) = name.split_once('.').unwrap();
    Attribute {
        namespace: Some(namespace.into()),
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn the_three_tier_example_loads() {
    let text = include_str!("../../../examples/three-tier/inventory.yaml");
    let inventory = Inventory::from_yaml_str(text).unwrap();
    assert_eq!(inventory.vcns().len(), 2);
    assert_eq!(inventory.endpoints().len(), 4);
    let db = inventory.endpoint_at("10.1.1.10".parse().unwrap()).unwrap();
    assert_eq!(db.name, "db");
    assert_eq!(inventory.vcn_of(db).name, "backend-vcn");
    assert_eq!(db.interface.as_deref(), Some("zpr-db"));
    assert_eq!(db.mode, Mode::Enforce);
    assert!(db.is_protected());
    let front = inventory
        .vcn_containing("10.0.99.1".parse().unwrap())
        .unwrap();
    assert_eq!(front.name, "frontend-vcn");
    assert!(
        inventory
            .vcn_containing("198.51.100.10".parse().unwrap())
            .is_none()
    );
}

#[test]
fn classify_and_carried_follow_the_namespaces() {
    let inventory = inventory(
        "
vcns:
  - { name: v, cidrs: [10.0.0.0/16], security-attribute: ocvtc002.networks:front-end }
endpoints:
  - { name: a, vcn: v, addresses: [10.0.0.1], security-attributes: [ocvtc002.apps:server] }
",
    )
    .unwrap();
    assert_eq!(
        inventory.classify(&attribute("ocvtc002.apps:server")),
        AttributeStatus::Known
    );
    assert_eq!(
        inventory.classify(&attribute("OCVTC002.APPS:server")),
        AttributeStatus::Known
    );
    assert_eq!(
        inventory.classify(&attribute("other.apps:server")),
        AttributeStatus::UnknownNamespace
    );
    assert_eq!(
        inventory.classify(&attribute("ocvtc002.ap:server")),
        AttributeStatus::UnknownKey
    );
    assert_eq!(
        inventory.classify(&attribute("ocvtc002.apps:Server")),
        AttributeStatus::ValueNotInList
    );
    assert_eq!(
        inventory.classify(&attribute("ocvtc002.owner:anyone")),
        AttributeStatus::Known
    );
    assert!(inventory.is_carried(&attribute("ocvtc002.apps:server")));
    assert!(inventory.is_carried(&attribute("ocvtc002.networks:front-end")));
    assert!(!inventory.is_carried(&attribute("ocvtc002.db:customer-db")));
}

#[test]
fn attribute_problems_name_their_path_and_the_known_names() {
    let found = errors(
        "
vcns:
  - { name: v, cidrs: [10.0.0.0/16], security-attribute: ocvtc00.networks:front-end }
endpoints:
  - { name: a, vcn: v, addresses: [10.0.0.1], security-attributes: [ocvtc002.apps:server] }
  - { name: b, vcn: v, addresses: [10.0.0.2] }
  - { name: c, vcn: v, addresses: [10.0.0.3] }
  - { name: d, vcn: v, addresses: [10.0.0.4], security-attributes: [ocvtc002.apps:server, ocvtc002.ap:server] }
  - { name: e, vcn: v, addresses: [10.0.0.5], security-attributes: [ocvtc002.networks:middle] }
",
    );
    assert_eq!(
        found,
        vec![
            "vcns[0].security-attribute: unknown namespace 'ocvtc00' (known: ocvtc002); \
         did you mean 'ocvtc002'?",
            "endpoints[3].security-attributes[1]: unknown key 'ap' in namespace 'ocvtc002' \
         (known: apps, db, lb, networks, owner)",
            "endpoints[4].security-attributes[0]: value 'middle' is not in the list of \
         'ocvtc002.networks' (allowed: back-end, front-end)",
        ]
    );
}

#[test]
fn address_and_cidr_problems_are_all_reported() {
    let found = errors(
        "
vcns:
  - { name: front, cidrs: [10.0.0.0/16] }
  - { name: back, cidrs: [10.0.128.0/17, 10.1.0.5/16] }
  - { name: front, cidrs: [192.168.0.0/24] }
endpoints:
  - { name: a, vcn: front, addresses: [10.0.0.1, 10.9.0.1] }
  - { name: b, vcn: front, addresses: [10.0.0.1, not-an-ip] }
  - { name: c, vcn: middle, addresses: [10.0.0.7] }
  - { name: a, vcn: front, addresses: [] }
",
    );
    let expected = [
        "vcns[1].cidrs[0]: 10.0.128.0/17 overlaps 10.0.0.0/16 of VCN 'front' (vcns[0].cidrs[0])",
        "vcns[1].cidrs[1]: host bits are set in '10.1.0.5/16' (write 10.1.0.0/16)",
        "vcns[2].name: duplicate VCN name 'front' (also vcns[0])",
        "endpoints[0].addresses[1]: address 10.9.0.1 is outside VCN 'front' (10.0.0.0/16)",
        "endpoints[1].addresses[0]: address 10.0.0.1 is also declared by endpoint 'a' \
         (endpoints[0].addresses[0])",
        "endpoints[1].addresses[1]: 'not-an-ip' is not an IP address",
        "endpoints[2].vcn: unknown VCN 'middle' (known: back, front, front)",
        "endpoints[3].name: duplicate endpoint name 'a' (also endpoints[0])",
        "endpoints[3].addresses: an endpoint needs at least one address",
    ];
    for message in expected {
        assert!(
            found.iter().any(|f| f == message),
            "missing {message:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn endpoint_limits() {
    let found = errors(
        "
vcns:
  - { name: v, cidrs: [10.0.0.0/16] }
endpoints:
  - name: a
    vcn: v
    addresses: [10.0.0.1]
    interface: this-name-is-too-long
    security-attributes: [ocvtc002.owner:a, ocvtc002.owner:b, ocvtc002.owner:c,
                          ocvtc002.owner:d, ocvtc002.owner:e, ocvtc002.owner:f]
  - { name: b, vcn: v, addresses: [10.0.0.2], interface: zpr-b, security-attributes: [ocvtc002.owner:x, ocvtc002.OWNER:x] }
  - { name: c, vcn: v, addresses: [10.0.0.3], interface: zpr-b }
",
    );
    assert_eq!(
        found,
        vec![
            "endpoints[0].interface: invalid interface name 'this-name-is-too-long': 1 to 15 \
         visible characters, no '/' or ':'",
            "endpoints[0].security-attributes: 6 security attributes; an endpoint carries at most 5",
            "endpoints[1].security-attributes[1]: duplicate security attribute 'ocvtc002.OWNER:x'",
            "endpoints[2].interface: interface 'zpr-b' is also used by endpoints[1]",
        ]
    );
}

#[test]
fn unknown_keys_get_a_suggestion_and_a_position() {
    let found = errors(
        "
vcns:
  - { name: v, cidrs: [10.0.0.0/16] }
endpoints:
  - name: a
    vcn: v
    adresses: [10.0.0.1]
  - name: b
    vcn: v
    addresses: [10.0.0.2]
    security-attribute: [ocvtc002.owner:x]
osn-service: [192.0.2.0/24]
",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].ends_with(
        "endpoints[0]: unknown key 'adresses' (expected one of: name, vcn, addresses, \
         interface, node, mac, security-attributes, mode); did you mean 'addresses'?"
    ));
    // serde_yaml knows where the first one is.
    assert!(found[0].starts_with("16:5: "), "{}", found[0]);
    assert!(
        found[1].contains("did you mean 'security-attributes'?"),
        "{}",
        found[1]
    );
    assert!(
        found[2].starts_with("unknown key 'osn-service'"),
        "{}",
        found[2]
    );
    assert!(
        found[2].contains("did you mean 'osn-services'?"),
        "{}",
        found[2]
    );
}

#[test]
fn an_unknown_key_in_a_nested_list_is_named_by_its_whole_path() {
    let found = Inventory::from_yaml_str(
        "
namespaces:
  - name: one
  - name: two
    attributes:
      - { key: owner, type: freeform }
      - { key: zone, type: list, valeus: [a] }
",
    )
    .unwrap_err()
    .0
    .iter()
    .map(ToString::to_string)
    .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("namespaces[1].attributes[1]: unknown key 'valeus'"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("did you mean 'values'?"), "{}", found[0]);
}

#[test]
fn shape_and_syntax_errors_carry_line_and_column() {
    let found = errors(
        "
endpoints:
  - name: a
    mode: enforcing
",
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("unknown variant `enforcing`"),
        "{}",
        found[0]
    );
    assert!(
        found[0].starts_with("13:11: endpoints[0].mode"),
        "{}",
        found[0]
    );
    let found = Inventory::from_yaml_str("vcns: [ {name: v").unwrap_err();
    assert!(found.0[0].location.is_some(), "{found}");
}

#[test]
fn namespace_definitions_are_checked() {
    let found = Inventory::from_yaml_str(
        "
namespaces:
  - name: ns
    attributes:
      - { key: tier, type: list, values: [web, web] }
      - { key: TIER, type: freeform }
      - { key: owner, type: freeform, values: [x] }
      - { key: empty, type: list }
  - name: NS
",
    )
    .unwrap_err()
    .to_string();
    for message in [
        "namespaces[0].attributes[0].values[1]: duplicate value 'web' (also values[0])",
        "namespaces[0].attributes[1].key: duplicate key 'TIER' in namespace 'ns' (also attributes[0])",
        "namespaces[0].attributes[2].values: freeform attribute 'owner' takes no values",
        "namespaces[0].attributes[3]: list attribute 'empty' needs values",
        "namespaces[1].name: duplicate namespace 'NS' (also namespaces[0])",
    ] {
        assert!(found.contains(message), "missing {message:?} in\n{found}");
    }
}

#[test]
fn empty_document_is_an_empty_inventory() {
    let inventory = Inventory::from_yaml_str("").unwrap();
    assert!(inventory.endpoints().is_empty() && inventory.vcns().is_empty());
    let inventory =
        Inventory::from_yaml_str("osn-services: [192.0.2.0/24, '2001:db8:5::/48']").unwrap();
    assert_eq!(inventory.osn_services().len(), 2);
}

#[test]
fn yaml_scalars_of_any_kind_are_text() {
    let inventory = Inventory::from_yaml_str(
        "
namespaces:
  - { name: ns, attributes: [ { key: level, type: list, values: [1, 2, true] } ] }
vcns:
  - { name: 42, cidrs: [10.0.0.0/8], security-attribute: 'ns.level:1' }
endpoints:
  - { name: 7, vcn: 42, addresses: [10.0.0.1], security-attributes: ['ns.level:true'] }
",
    )
    .unwrap();
    assert_eq!(inventory.endpoints()[0].name, "7");
    assert_eq!(inventory.vcn_of(&inventory.endpoints()[0]).name, "42");
}
