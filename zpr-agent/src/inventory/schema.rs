//! The inventory's YAML shape, as written: strings not yet checked.
//!
//! serde stops at the first problem, so unknown keys (the usual typo) are
//! found first by walking the document against the field names the structs
//! below declare; each gets its path and a did-you-mean.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_yaml::Value;

use super::{InventoryError, Location, Mode};
use crate::lang::suggest::closest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawInventory {
    #[serde(default)]
    pub namespaces: Vec<RawNamespace>,
    #[serde(default)]
    pub vcns: Vec<RawVcn>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    pub osn_services: Vec<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawNamespace {
    pub name: Scalar,
    #[serde(default)]
    pub attributes: Vec<RawAttributeDefinition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAttributeDefinition {
    pub key: Scalar,
    #[serde(rename = "type")]
    pub kind: RawAttributeKind,
    pub values: Option<Vec<Scalar>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawAttributeKind {
    List,
    Freeform,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawVcn {
    pub name: Scalar,
    pub cidrs: Vec<Scalar>,
    /// Singular on purpose: a VCN carries at most one attribute.
    pub security_attribute: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawEndpoint {
    pub name: Scalar,
    pub vcn: Scalar,
    pub addresses: Vec<Scalar>,
    pub interface: Option<Scalar>,
    pub node: Option<Scalar>,
    /// The vNIC's MAC address (`52:54:00:12:34:56`), as libvirt gives it.
    pub mac: Option<Scalar>,
    #[serde(default)]
    pub security_attributes: Vec<Scalar>,
    #[serde(default)]
    pub mode: Mode,
}

/// Any YAML scalar read as its text, so `values: [1, 2]` or `name: 42`
/// need no quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Reads the document's shape; on failure every unknown key (with a
/// suggestion) and serde's first other complaint.
pub(super) fn parse(text: &str) -> Result<RawInventory, Vec<InventoryError>> {
    if let Some(error) = super::nesting::too_deep(text) {
        return Err(vec![error]);
    }
    if let Some(error) = super::aliases::expand_too_far(text) {
        return Err(vec![error]);
    }
    // A valid inventory (the usual case) reads straight into the schema:
    // `deny_unknown_fields` at every level means it has no unknown key, so
    // the walk below would find nothing. Only a text that fails is built as
    // a document, for every unknown key and serde's complaint to be found.
    if let Ok(raw) = serde_yaml::from_str::<RawInventory>(text) {
        return Ok(raw);
    }
    let document: Value = serde_yaml::from_str(text).map_err(|error| vec![from_serde(&error)])?;
    if document.is_null() {
        return Ok(empty());
    }
    let mut errors = Vec::new();
    check_keys(&document, Schema::Inventory, Path::Root, &mut errors);
    if errors.is_empty()
        && let Ok(raw) = serde_yaml::from_value::<RawInventory>(document)
    {
        return Ok(raw);
    }
    // Read again from the text, whose errors say where they are.
    match serde_yaml::from_str::<RawInventory>(text) {
        Ok(raw) if errors.is_empty() => Ok(raw),
        Ok(_) => Err(errors),
        Err(error) => {
            let serde_error = from_serde(&error);
            let unknown_key = error.to_string().contains("unknown field");
            match errors.first_mut() {
                // The same first unknown key, found by both: keep the
                // suggestion, take serde's position.
                Some(first) if unknown_key => first.location = serde_error.location,
                _ => errors.push(serde_error),
            }
            Err(errors)
        }
    }
}

fn empty() -> RawInventory {
    RawInventory {
        namespaces: Vec::new(),
        vcns: Vec::new(),
        endpoints: Vec::new(),
        osn_services: Vec::new(),
    }
}

fn from_serde(error: &serde_yaml::Error) -> InventoryError {
    let location = error.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    // serde_yaml ends its message with the position; the location carries it.
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) if location.is_some() => message[..at].to_owned(),
        _ => message,
    };
    InventoryError {
        path: String::new(),
        message,
        location,
    }
}

/// The mappings of the document, to check their keys against.
#[derive(Clone, Copy)]
enum Schema {
    Inventory,
    Namespace,
    AttributeDefinition,
    Vcn,
    Endpoint,
}

impl Schema {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Schema::Inventory => field_names::<RawInventory>(),
            Schema::Namespace => field_names::<RawNamespace>(),
            Schema::AttributeDefinition => field_names::<RawAttributeDefinition>(),
            Schema::Vcn => field_names::<RawVcn>(),
            Schema::Endpoint => field_names::<RawEndpoint>(),
        }
    }

    /// The schema of the items of the list under `key`, if they are mappings.
    fn items_of(self, key: &str) -> Option<Schema> {
        match (self, key) {
            (Schema::Inventory, "namespaces") => Some(Schema::Namespace),
            (Schema::Inventory, "vcns") => Some(Schema::Vcn),
            (Schema::Inventory, "endpoints") => Some(Schema::Endpoint),
            (Schema::Namespace, "attributes") => Some(Schema::AttributeDefinition),
            _ => None,
        }
    }
}

/// Where a mapping is in the document: the keys and list indices leading
/// to it (written out only for an error: most documents have none).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Item {
        list: &'a Path<'a>,
        key: &'a str,
        index: usize,
    },
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Item {
                list: Path::Root,
                key,
                index,
            } => write!(f, "{key}[{index}]"),
            Path::Item { list, key, index } => write!(f, "{list}.{key}[{index}]"),
        }
    }
}

fn check_keys(value: &Value, schema: Schema, path: Path, errors: &mut Vec<InventoryError>) {
    let Value::Mapping(mapping) = value else {
        // serde reports a value of the wrong kind.
        return;
    };
    let fields = schema.fields();
    for (key, child) in mapping {
        let Some(key) = key.as_str() else { continue };
        if !fields.contains(&key) {
            let mut message = format!(
                "unknown key '{key}' (expected one of: {})",
                fields.join(", ")
            );
            if let Some(suggestion) = closest(key, fields.iter().copied()) {
                message.push_str(&format!("; did you mean '{suggestion}'?"));
            }
            errors.push(InventoryError {
                path: path.to_string(),
                message,
                location: None,
            });
            continue;
        }
        if let (Some(items), Value::Sequence(sequence)) = (schema.items_of(key), child) {
            for (index, item) in sequence.iter().enumerate() {
                let item_path = Path::Item {
                    list: &path,
                    key,
                    index,
                };
                check_keys(item, items, item_path, errors);
            }
        }
    }
}

/// The field names `T`'s derived `Deserialize` accepts, read by asking it to
/// deserialize from a probe that records them and gives up.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always fails; only the recorded names matter.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
