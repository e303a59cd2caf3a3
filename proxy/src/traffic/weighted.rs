//! An endpoint's address with its weight and labels, as the control plane sends it and as
//! a file-configured upstream lists it: `"127.0.0.1:7001"` (the default weight, no labels)
//! or `{ address = "127.0.0.1:7002", weight = 300, labels = { version = "v2" } }`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signet_traffic::labels::{self, Labels};
use signet_traffic::weight;

/// An endpoint, how much of its service's traffic it is meant to carry, and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedAddr {
    pub addr: SocketAddr,
    /// 1 to [`weight::MAX`].
    pub weight: u32,
    /// What traffic subsets select by (shared: endpoints are compared and kept often).
    pub labels: Arc<Labels>,
}

impl WeightedAddr {
    /// `addr` with the default weight and no labels.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: weight::DEFAULT,
            labels: Arc::default(),
        }
    }
}

fn parse_addr<E: de::Error>(text: &str) -> Result<SocketAddr, E> {
    text.parse()
        .map_err(|_| E::custom(format!("`{}` is not host:port", text.escape_debug())))
}

impl<'de> Deserialize<'de> for WeightedAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = WeightedAddr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"host:port\" or { address = \"host:port\", weight = N, labels = {...} }",
                )
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<WeightedAddr, E> {
                parse_addr(text).map(WeightedAddr::new)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WeightedAddr, A::Error> {
                let (mut addr, mut weight, mut found) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "address" if addr.is_none() => {
                            addr = Some(parse_addr(&map.next_value::<String>()?)?);
                        }
                        "weight" if weight.is_none() => {
                            let w = map.next_value::<u32>()?;
                            weight = Some(weight::check(w).map_err(de::Error::custom)?);
                        }
                        "labels" if found.is_none() => {
                            let l = map.next_value::<Labels>()?;
                            labels::check(&l).map_err(de::Error::custom)?;
                            found = Some(l);
                        }
                        "address" | "weight" | "labels" => {
                            return Err(de::Error::duplicate_field("key"));
                        }
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["address", "weight", "labels"],
                            ));
                        }
                    }
                }
                Ok(WeightedAddr {
                    addr: addr.ok_or_else(|| de::Error::missing_field("address"))?,
                    weight: weight.unwrap_or(weight::DEFAULT),
                    labels: Arc::new(found.unwrap_or_default()),
                })
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

impl Serialize for WeightedAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.weight == weight::DEFAULT && self.labels.is_empty() {
            return serializer.collect_str(&self.addr);
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("address", &self.addr.to_string())?;
        map.serialize_entry("weight", &self.weight)?;
        if !self.labels.is_empty() {
            map.serialize_entry("labels", &*self.labels)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Doc {
        endpoints: Vec<WeightedAddr>,
    }

    fn parse(text: &str) -> Result<Vec<WeightedAddr>, String> {
        toml::from_str::<Doc>(text)
            .map(|d| d.endpoints)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn an_address_alone_or_with_a_weight() {
        let list = parse(
            r#"endpoints = ["127.0.0.1:7001", { address = "127.0.0.1:7002", weight = 300 }]"#,
        )
        .unwrap();
        assert_eq!(
            list[0],
            WeightedAddr::new("127.0.0.1:7001".parse().unwrap())
        );
        assert_eq!(list[1].weight, 300);
        // And back, in the same two spellings.
        let text = serde_json::to_string(&Doc {
            endpoints: list.clone(),
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"endpoints":["127.0.0.1:7001",{"address":"127.0.0.1:7002","weight":300}]}"#
        );
        assert_eq!(serde_json::from_str::<Doc>(&text).unwrap().endpoints, list);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (text, message) in [
            (r#"endpoints = ["cart:80"]"#, "`cart:80` is not host:port"),
            (
                r#"endpoints = [{ address = "127.0.0.1:1", weight = 0 }]"#,
                "weight 0 is not between 1 and 10000",
            ),
            (
                r#"endpoints = [{ address = "127.0.0.1:1", weight = 20000 }]"#,
                "weight 20000 is not between 1 and 10000",
            ),
            (r#"endpoints = [{ weight = 5 }]"#, "missing field `address`"),
            (
                r#"endpoints = [{ address = "127.0.0.1:1", wieght = 5 }]"#,
                "unknown field `wieght`, expected one of `address`, `weight`, `labels`",
            ),
            (r#"endpoints = [7]"#, "\"host:port\" or { address"),
            (
                r#"endpoints = [{ address = "127.0.0.1:1", labels = { "a b" = "x" } }]"#,
                "label key `a b`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(message), "{text}: {e}");
        }
    }
}
