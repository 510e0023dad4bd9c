//! JSON decoding with the key matching of Go's `encoding/json`, which the
//! reference plugins and the runtimes that call them are written against.
//!
//! Go matches an object key to a struct field by name, exactly if some field
//! has that name, else case-insensitively; when several keys land on one
//! field the last one in the document wins; unknown keys are ignored. Go
//! runtimes rely on it: containerd's go-cni serialises capability arguments
//! from structs without JSON tags (`{"HostPort":8080,"ContainerPort":80,…}`).
//!
//! [`from_value`] decodes any `Deserialize` type from a `&Value` through
//! [`GoValue`], a deserializer adapter that renames each key of an object
//! decoded as a struct to the field it lands on, keeps the last value per
//! field, and wraps nested values (through sequences, options, maps,
//! newtypes and enums) in itself. Everything else is serde_json's own `&Value`
//! deserializer, so type checks and error messages are unchanged. Map keys
//! (`map[string]T` in Go) are kept exactly as written.
//!
//! serde's `#[serde(flatten)]` and untagged enums buffer values in serde's
//! own content type and bypass the adapter: input types must not use them
//! (`crate::conf::NetConf` decodes its plugin's keys in a second pass
//! instead).
//!
//! Key order matters for "last wins": the workspace builds serde_json with
//! `preserve_order`, so a `Value` keeps the document's order. A key written
//! twice with the same spelling keeps its first position (serde_json's map
//! updates the value in place); [`parse_slice`] parses as Go sees it, moving
//! such a key to its last position.

use std::fmt;

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::{Error, Map, Value};

/// Decode `T` from `value` with Go's key matching (see the module docs).
///
/// # Errors
/// serde_json's errors, as `T::deserialize(value)` would report them.
pub fn from_value<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, Error> {
    T::deserialize(GoValue(value))
}

/// Parse JSON bytes as Go does ([`parse_slice`]) and decode `T` from them.
///
/// # Errors
/// Invalid JSON, or as [`from_value`].
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    from_value(&parse_slice(bytes)?)
}

/// Parse JSON bytes into a `Value` whose objects list their keys in the order
/// Go's decoder applies them: a key written more than once ends up at its
/// last position, with its last value.
///
/// # Errors
/// Invalid JSON (serde_json's message, with line and column).
pub fn parse_slice(bytes: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = GoOrderSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Whether two names are equal under Go's case folding (ASCII case-insensitive,
/// and Unicode lowercase for other characters).
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The value of the struct field `field` in `map`, as Go would decode it into
/// a struct that has no other field of the same name under case folding: the
/// last key equal to `field` under folding. For hand-written look-ups.
pub fn get<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let mut found = None;
    for (k, v) in map {
        if k == field || fold_eq(k, field) {
            found = Some(v);
        }
    }
    found
}

/// [`get`] on a value that may not be an object (then `None`).
pub fn get_in<'a>(value: &'a Value, field: &str) -> Option<&'a Value> {
    value.as_object().and_then(|m| get(m, field))
}

/// Remove every key that lands on `field` (as [`get`] finds them) and return
/// the value Go would decode: the last one. The other keys keep their order.
pub fn take(map: &mut Map<String, Value>, field: &str) -> Option<Value> {
    let keys: Vec<String> = map
        .keys()
        .filter(|k| *k == field || fold_eq(k, field))
        .cloned()
        .collect();
    let mut found = None;
    for k in keys {
        found = map.shift_remove(&k);
    }
    found
}

/// The field of `fields` a key lands on: the one spelled exactly like it,
/// else the first equal under case folding.
fn canonical(key: &str, fields: &'static [&'static str]) -> Option<usize> {
    fields
        .iter()
        .position(|f| *f == key)
        .or_else(|| fields.iter().position(|f| fold_eq(f, key)))
}

/// A `serde::Deserializer` over a `&Value` with Go's key matching (see the
/// module docs).
#[derive(Debug, Clone, Copy)]
pub struct GoValue<'a>(pub &'a Value);

macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> GoValue<'de> {
    fn visit_array<V: Visitor<'de>>(items: &'de [Value], visitor: V) -> Result<V::Value, Error> {
        let mut seq = Seq(items.iter());
        let out = visitor.visit_seq(&mut seq)?;
        if seq.0.len() == 0 {
            Ok(out)
        } else {
            Err(de::Error::invalid_length(
                items.len(),
                &"fewer elements in array",
            ))
        }
    }

    fn visit_object<V: Visitor<'de>>(
        map: &'de Map<String, Value>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Entries {
            iter: map.iter().map(|(k, v)| (k.as_str(), v)),
            value: None,
        })
    }
}

impl<'de> Deserializer<'de> for GoValue<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => Self::visit_object(map, visitor),
            Value::Array(items) => Self::visit_array(items, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let map = match self.0 {
            Value::Object(map) => map,
            Value::Array(items) => return Self::visit_array(items, visitor),
            other => return other.deserialize_struct(name, fields, visitor),
        };
        // One slot per field; keys that land on no field pass through as
        // they are (the map cannot hold two of them with one spelling).
        let mut entries: Vec<(&'de str, &'de Value)> = Vec::with_capacity(map.len());
        let mut slot_of_field: Vec<Option<usize>> = vec![None; fields.len()];
        for (key, value) in map {
            match canonical(key, fields) {
                Some(f) => match slot_of_field[f] {
                    Some(slot) => entries[slot].1 = value,
                    None => {
                        slot_of_field[f] = Some(entries.len());
                        entries.push((fields[f], value));
                    }
                },
                None => entries.push((key.as_str(), value)),
            }
        }
        visitor.visit_map(Entries {
            iter: entries.into_iter(),
            value: None,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => Self::visit_object(map, visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => Self::visit_array(items, visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => Self::visit_array(items, visitor),
            other => other.deserialize_tuple(len, visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => Self::visit_array(items, visitor),
            other => other.deserialize_tuple_struct(name, len, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((variant, value)) => visitor.visit_enum(Enum { variant, value }),
                None => self.0.deserialize_enum(name, variants, visitor),
            },
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }
}

/// An object's entries, values wrapped in [`GoValue`].
struct Entries<'de, I> {
    iter: I,
    value: Option<&'de Value>,
}

impl<'de, I: Iterator<Item = (&'de str, &'de Value)>> MapAccess<'de> for Entries<'de, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(GoValue(value)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        match self.iter.size_hint() {
            (lower, Some(upper)) if lower == upper => Some(upper),
            _ => None,
        }
    }
}

/// An array's elements, wrapped in [`GoValue`].
struct Seq<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(GoValue(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// An externally tagged enum written as `{"Variant": value}`.
struct Enum<'de> {
    variant: &'de str,
    value: &'de Value,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = Error;
    type Variant = GoValue<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, GoValue<'de>), Error> {
        let tag = seed.deserialize(BorrowedStrDeserializer::new(self.variant))?;
        Ok((tag, GoValue(self.value)))
    }
}

impl<'de> VariantAccess<'de> for GoValue<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            Value::Null => Ok(()),
            other => Err(de::Error::invalid_type(unexpected(other), &"unit variant")),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// Builds a `Value` like serde_json does, except that a repeated key moves
/// to its last position (Go applies keys in document order), from any
/// deserializer.
pub(crate) struct GoOrderSeed;

impl<'de> DeserializeSeed<'de> for GoOrderSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(GoOrderVisitor)
    }
}

struct GoOrderVisitor;

impl<'de> Visitor<'de> for GoOrderVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        GoOrderSeed.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(GoOrderSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // serde_json gives no size hint; most CNI objects have a few keys,
        // and growing the ordered map from empty costs more than the slack.
        let mut out = Map::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(GoOrderSeed)?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    // Rare: the key again; it counts at its new position.
                    let key = slot.key().clone();
                    slot.shift_remove();
                    out.insert(key, value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
