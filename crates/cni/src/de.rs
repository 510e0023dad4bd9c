//! Deserialization helpers shared by the configuration ([`crate::conf`],
//! which re-exports them) and the result types ([`crate::types`]). A leaf:
//! it uses nothing else of this crate, so both can use it without a module
//! cycle.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Deserialize `null` as the type's default (Go's JSON decoding treats a
/// `null` list as empty; runtimes do send `"portMappings": null`).
///
/// # Errors
/// Whatever `T`'s deserializer reports for non-null values.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Deserialize a CIDR that must carry a prefix length (`10.1.0.0/16`);
/// `ipnetwork` alone would read a bare address as a /32.
///
/// # Errors
/// `invalid CIDR address: X` for anything else.
pub fn cidr_with_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<IpNetwork, D::Error> {
    use serde::de::Error as _;
    let raw = String::deserialize(d)?;
    if !raw.contains('/') {
        return Err(D::Error::custom(format!("invalid CIDR address: {raw}")));
    }
    raw.parse()
        .map_err(|_| D::Error::custom(format!("invalid CIDR address: {raw}")))
}

/// The JSON keys a `#[derive(Deserialize)]` struct reads (field names after renames), so
/// that tests can check every key is documented (the plugins' README pages). Empty for
/// anything that is not a plain struct (e.g. one with a `#[serde(flatten)]` field).
pub fn struct_keys<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut keys = Vec::new();
    let _ = T::deserialize(KeyProbe(&mut keys));
    keys
}

/// A deserializer that records the field list a struct asks for, then fails.
struct KeyProbe<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for KeyProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(serde::de::Error::custom("keys recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Deserialize an optional IP address where `""` means absent, as Go's
/// `net.IP` decodes it: containerd's go-cni sends every field of its
/// `IPRanges` struct, `"RangeStart": ""` included.
///
/// # Errors
/// `invalid IP address syntax` for any other text that is not an address.
pub fn empty_ip_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    use serde::de::Error as _;
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(D::Error::custom),
    }
}
