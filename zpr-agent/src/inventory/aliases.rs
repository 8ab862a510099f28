//! How far an inventory's YAML aliases (`*name`) expand, found before the
//! document is built: each alias stands for a copy of its anchored node,
//! so a 31 KB file of one anchored list referenced a few thousand times
//! builds a document of gigabytes (memory grows with the square of the
//! file's size), and the parser's own limit grows with the file too.
//!
//! Aliases are bounded rather than refused: they are ordinary YAML, and an
//! inventory may well share an attribute list among endpoints with them.
//! What is refused is expansion beyond what the text could hold written
//! out: every node written takes at least one byte, so a document may
//! expand to [`NODES_PER_BYTE`] nodes per byte of its text (and
//! [`MIN_NODES`] whatever its size) and no more. That keeps the document
//! linear in the file's size, as it is without aliases.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

use super::{InventoryError, Location};

/// Nodes an alias-free document may hold per byte of its text, at most.
pub const NODES_PER_BYTE: usize = 2;
/// Nodes any document may expand to.
pub const MIN_NODES: usize = 100_000;

/// The first place where the document's aliases expand it beyond its
/// budget; `None` when they do not (or the text holds no alias at all, or
/// does not parse: the parse that follows reports that).
pub fn expand_too_far(text: &str) -> Option<InventoryError> {
    // An alias starts with '*' and names an anchor, which starts with '&':
    // a text without both has nothing to expand, and is not read twice.
    if !text.contains('*') || !text.contains('&') {
        return None;
    }
    let budget = MIN_NODES.max(text.len().saturating_mul(NODES_PER_BYTE));
    let counter = Counter {
        left: Cell::new(budget),
        exhausted: Cell::new(false),
    };
    let error = Counting(&counter)
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    if !counter.exhausted.get() {
        return None;
    }
    Some(InventoryError {
        path: String::new(),
        message: format!(
            "YAML aliases (*name) repeat the value here so often that this inventory expands \
             to more than {budget} values, more than its {} bytes could hold written out; write \
             the repeated values out, or reference them fewer times (is the file hostile?)",
            text.len()
        ),
        location: error.location().map(|location| Location {
            line: location.line(),
            column: location.column(),
        }),
    })
}

struct Counter {
    /// The nodes still allowed.
    left: Cell<usize>,
    /// True once a node beyond the budget was met.
    exhausted: Cell<bool>,
}

impl Counter {
    fn take_one<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get() {
            0 => {
                self.exhausted.set(true);
                Err(E::custom("aliases expand too far"))
            }
            left => {
                self.left.set(left - 1);
                Ok(())
            }
        }
    }
}

/// Reads one node and everything in it, keeping nothing, counting each.
#[derive(Clone, Copy)]
struct Counting<'a>(&'a Counter);

impl<'de> DeserializeSeed<'de> for Counting<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

macro_rules! count_scalars {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $type) -> Result<(), E> {
            self.0.take_one()
        })*
    };
}

impl<'de> Visitor<'de> for Counting<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    count_scalars! {
        visit_bool(bool), visit_i64(i64), visit_i128(i128), visit_u64(u64),
        visit_u128(u128), visit_f64(f64), visit_str(&str), visit_bytes(&[u8]),
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.take_one()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.take_one()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<(), A::Error> {
        self.0.take_one()?;
        while sequence.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut mapping: A) -> Result<(), A::Error> {
        self.0.take_one()?;
        while mapping.next_key_seed(self)?.is_some() {
            mapping.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged node (`!tag value`).
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess as _;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_of_many_aliases_to_a_large_list_is_refused_where_it_grows() {
        let bomb = include_str!("../../tests/hostile/alias-bomb.yaml");
        let error = expand_too_far(bomb).expect("refused");
        assert!(error.message.contains("YAML aliases"), "{}", error.message);
        assert_eq!(error.location.map(|location| location.line), Some(5));
    }

    #[test]
    fn aliases_that_share_a_few_values_are_fine() {
        let mut text = String::from(
            "namespaces:\n  - name: app\n    attributes:\n      - key: role\n        type: freeform\n\
             common: &common [app:role=web, app:role=db]\nendpoints:\n",
        );
        for index in 0..2_000 {
            text += &format!(
                "  - name: e{index}\n    vcn: v\n    addresses: ['10.0.{}.{}']\n    \
                 security-attributes: *common\n",
                index / 250,
                index % 250
            );
        }
        assert_eq!(expand_too_far(&text), None);
    }

    #[test]
    fn a_text_without_aliases_or_that_does_not_parse_is_left_to_the_parser() {
        assert_eq!(expand_too_far("a: [1, 2, 3]\n"), None);
        assert_eq!(expand_too_far("a: *missing\n"), None);
        assert_eq!(expand_too_far("a: [*\n"), None);
    }
}
