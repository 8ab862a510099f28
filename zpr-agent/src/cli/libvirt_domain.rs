//! A libvirt domain's XML, as `virsh dumpxml` prints it and the qemu hook
//! receives it on stdin, read for what zpr registers: each `<interface>`
//! (its `<target dev>` is the vNIC on this host, with its MAC and alias)
//! and the domain's `<metadata>` element in zpr's XML namespace:
//!
//! ```xml
//! <zpr:endpoint xmlns:zpr="https://zpr.dev/xmlns/libvirt/1"
//!     vcn="frontend-vcn" addresses="10.0.2.11" attributes="ocvtc002.apps:server">
//!   <zpr:interface interface="net1" addresses="10.0.3.11"/>
//! </zpr:endpoint>
//! ```
//!
//! The element describes the domain's first interface (or the one its
//! `interface` names: an alias, a MAC, a target device or an index); each
//! `<zpr:interface>` child describes another, with the element's VCN and
//! attributes unless it gives its own. libvirt keeps one top-level
//! element per namespace, hence children rather than siblings.

use anyhow::{Context as _, bail};

pub const ZPR_XMLNS: &str = "https://zpr.dev/xmlns/libvirt/1";

/// One interface of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInterface {
    /// `<domain name>-<alias or index>`: the endpoint's name.
    pub endpoint: String,
    /// `<target dev>`, when libvirt has named it.
    pub device: Option<String>,
    pub mac: Option<String>,
    alias: Option<String>,
    index: usize,
}

/// What the metadata says of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub interface: DomainInterface,
    pub vcn: String,
    pub addresses: Vec<String>,
    pub attributes: Vec<String>,
}

#[derive(Debug)]
pub struct Domain {
    pub name: String,
    pub interfaces: Vec<DomainInterface>,
    /// The interfaces zpr's metadata describes.
    pub registrations: Vec<Registration>,
}

impl Domain {
    pub fn parse(xml: &str) -> anyhow::Result<Domain> {
        let document = roxmltree::Document::parse(xml).context("the domain XML does not parse")?;
        let root = document.root_element();
        if !root.has_tag_name("domain") {
            bail!(
                "the XML is a <{}>, not a libvirt <domain>",
                root.tag_name().name()
            );
        }
        let name = child(root, "name")
            .and_then(|node| node.text())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .context("the domain has no <name>")?
            .to_owned();
        let interfaces: Vec<DomainInterface> = child(root, "devices")
            .into_iter()
            .flat_map(|devices| devices.children().filter(|n| n.has_tag_name("interface")))
            .enumerate()
            .map(|(index, interface)| {
                let attribute = |element: &str, name: &str| {
                    child(interface, element)
                        .and_then(|node| node.attribute(name))
                        .map(str::to_owned)
                };
                let alias = attribute("alias", "name");
                DomainInterface {
                    endpoint: format!(
                        "{name}-{}",
                        alias.clone().unwrap_or_else(|| index.to_string())
                    ),
                    device: attribute("target", "dev"),
                    mac: attribute("mac", "address"),
                    alias,
                    index,
                }
            })
            .collect();
        let registrations = match child(root, "metadata").and_then(|metadata| {
            metadata
                .children()
                .find(|node| node.tag_name().namespace() == Some(ZPR_XMLNS))
        }) {
            Some(element) => registrations(&name, element, &interfaces)?,
            None => Vec::new(),
        };
        Ok(Domain {
            name,
            interfaces,
            registrations,
        })
    }
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|child| child.has_tag_name(name))
}

fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn registrations(
    domain: &str,
    element: roxmltree::Node,
    interfaces: &[DomainInterface],
) -> anyhow::Result<Vec<Registration>> {
    if !element.has_tag_name((ZPR_XMLNS, "endpoint")) {
        bail!(
            "domain {domain}: zpr's metadata element is <{}>; write <zpr:endpoint vcn=… \
             addresses=… attributes=…/>",
            element.tag_name().name()
        );
    }
    let vcn = element
        .attribute("vcn")
        .with_context(|| format!("domain {domain}: <zpr:endpoint> needs vcn=\"…\""))?;
    let attributes = words(element.attribute("attributes"));
    let describe = |node: roxmltree::Node, default: &str| -> anyhow::Result<Registration> {
        let selector = node.attribute("interface").unwrap_or(default);
        let interface = interfaces
            .iter()
            .find(|interface| selects(interface, selector))
            .with_context(|| {
                format!(
                    "domain {domain}: zpr's metadata names interface '{selector}', which the \
                     domain does not have (give an alias, a MAC, a target device or an index)"
                )
            })?;
        let addresses = words(node.attribute("addresses"));
        if addresses.is_empty() {
            bail!(
                "domain {domain}: interface '{selector}' needs addresses=\"…\" (IPv4 and IPv6, \
                 space-separated)"
            );
        }
        Ok(Registration {
            interface: interface.clone(),
            vcn: node.attribute("vcn").unwrap_or(vcn).to_owned(),
            addresses,
            attributes: match node.attribute("attributes") {
                Some(own) => words(Some(own)),
                None => attributes.clone(),
            },
        })
    };
    let mut registered = vec![describe(element, "0")?];
    for more in element
        .children()
        .filter(|node| node.has_tag_name((ZPR_XMLNS, "interface")))
    {
        if more.attribute("interface").is_none() {
            bail!("domain {domain}: each <zpr:interface> names its interface=\"…\"");
        }
        registered.push(describe(more, "")?);
    }
    Ok(registered)
}

fn selects(interface: &DomainInterface, selector: &str) -> bool {
    interface.alias.as_deref() == Some(selector)
        || interface.device.as_deref() == Some(selector)
        || interface
            .mac
            .as_deref()
            .is_some_and(|mac| mac.eq_ignore_ascii_case(selector))
        || selector.parse::<usize>() == Ok(interface.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_NICS: &str = r#"<domain type='kvm' id='7'>
  <name>web-1</name>
  <metadata>
    <zpr:endpoint xmlns:zpr="https://zpr.dev/xmlns/libvirt/1" vcn="front" addresses="10.0.2.11 fd00::11" attributes="ns.role:web ns.tier:1">
      <zpr:interface interface="52:54:00:AA:00:02" addresses="10.0.3.11" attributes="ns.role:backup"/>
    </zpr:endpoint>
    <other:thing xmlns:other="https://example.com/x"/>
  </metadata>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:aa:00:01'/>
      <target dev='vnet3'/>
      <alias name='net0'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:aa:00:02'/>
      <target dev='vnet4'/>
    </interface>
  </devices>
</domain>"#;

    #[test]
    fn each_interface_is_named_and_described() {
        let domain = Domain::parse(TWO_NICS).unwrap();
        assert_eq!(domain.name, "web-1");
        let names: Vec<&str> = domain
            .interfaces
            .iter()
            .map(|i| i.endpoint.as_str())
            .collect();
        assert_eq!(names, ["web-1-net0", "web-1-1"]);
        let [first, second] = domain.registrations.as_slice() else {
            panic!("{:?}", domain.registrations);
        };
        assert_eq!(first.interface.device.as_deref(), Some("vnet3"));
        assert_eq!(first.addresses, ["10.0.2.11", "fd00::11"]);
        assert_eq!(first.attributes, ["ns.role:web", "ns.tier:1"]);
        assert_eq!(second.interface.endpoint, "web-1-1");
        assert_eq!(second.vcn, "front", "inherited");
        assert_eq!(second.attributes, ["ns.role:backup"]);
    }

    #[test]
    fn a_domain_without_zpr_metadata_registers_nothing() {
        let plain = TWO_NICS.replace("zpr.dev/xmlns/libvirt/1", "example.com/not-zpr");
        let domain = Domain::parse(&plain).unwrap();
        assert!(domain.registrations.is_empty());
        assert_eq!(domain.interfaces.len(), 2);
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = TWO_NICS.replace("52:54:00:AA:00:02\" addresses", "net9\" addresses");
        let error = Domain::parse(&unknown).unwrap_err().to_string();
        assert!(error.contains("names interface 'net9'"), "{error}");
        let no_vcn = TWO_NICS.replace("vcn=\"front\"", "");
        let error = Domain::parse(&no_vcn).unwrap_err().to_string();
        assert!(error.contains("needs vcn="), "{error}");
        let error = Domain::parse("<network/>").unwrap_err().to_string();
        assert!(error.contains("not a libvirt <domain>"), "{error}");
    }
}
