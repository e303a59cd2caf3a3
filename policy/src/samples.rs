//! Path classes: the request paths worth trying against a bundle, read from its policies.
//!
//! An access diff over `connect` alone misses a change that opens `/admin` to a caller that
//! could already connect. The paths that can change a decision are the ones policies name: a
//! `context.path == "..."` literal, a `context.path like "..."` pattern (its wildcards
//! matched by nothing, which a `*` always allows), and `/Service/Method` for a
//! `context.grpc_service` / `context.grpc_method` comparison. `/` stands for every other path.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::bundle::PolicyBundle;

/// A gRPC method for a policy that names a gRPC service but no method.
const ANY_GRPC_METHOD: &str = "Call";

/// Every path class the policies of `bundles` name, with `/`, sorted.
pub fn path_classes(bundles: &[&PolicyBundle]) -> BTreeSet<String> {
    let mut paths = BTreeSet::from(["/".to_owned()]);
    for bundle in bundles {
        for policy in bundle.policies().policies() {
            let Ok(json) = policy.to_json() else { continue };
            let mut found = Found::default();
            walk(&json, &mut found);
            paths.extend(found.paths);
            let methods = if found.grpc_methods.is_empty() {
                BTreeSet::from([ANY_GRPC_METHOD.to_owned()])
            } else {
                found.grpc_methods
            };
            for service in &found.grpc_services {
                for method in &methods {
                    paths.insert(format!("/{service}/{method}"));
                }
            }
        }
    }
    paths
}

#[derive(Debug, Default)]
struct Found {
    paths: BTreeSet<String>,
    grpc_services: BTreeSet<String>,
    grpc_methods: BTreeSet<String>,
}

/// The attribute `node` reads when it is `context.<attr>`.
fn context_attr(node: &Value) -> Option<&str> {
    let dot = node.get(".")?;
    (dot.get("left")?.get("Var")?.as_str()? == "context")
        .then(|| dot.get("attr")?.as_str())
        .flatten()
}

/// The text a `like` pattern matches with every wildcard matching nothing.
fn shortest_match(pattern: &Value) -> Option<String> {
    match pattern {
        Value::String(s) => Some(s.replace('*', "")),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("Literal").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

fn walk(node: &Value, found: &mut Found) {
    match node {
        Value::Object(map) => {
            for (op, body) in map {
                let compared = match op.as_str() {
                    "==" => body
                        .get("right")
                        .and_then(|r| r.get("Value"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    "like" => body.get("pattern").and_then(shortest_match),
                    _ => None,
                };
                if let (Some(attr), Some(text)) =
                    (body.get("left").and_then(context_attr), compared)
                {
                    match attr {
                        "path" if text.starts_with('/') => {
                            found.paths.insert(text);
                        }
                        "grpc_service" if !text.is_empty() && !text.contains('/') => {
                            found.grpc_services.insert(text);
                        }
                        "grpc_method" if !text.is_empty() && !text.contains('/') => {
                            found.grpc_methods.insert(text);
                        }
                        _ => {}
                    }
                }
                walk(body, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::PolicySource;

    fn bundle(text: &str) -> PolicyBundle {
        PolicyBundle::from_sources(&[PolicySource {
            name: "p.cedar".into(),
            text: text.into(),
        }])
        .expect("valid policies")
    }

    #[test]
    fn paths_patterns_and_grpc_methods_become_classes() {
        let b = bundle(
            r#"
            @id("a") permit (principal, action == Mesh::Action::"GET", resource)
              when { context.path like "/api/*" };
            @id("b") forbid (principal, action == Mesh::Action::"GET", resource)
              when { context.path == "/admin" };
            @id("c") permit (principal, action == Mesh::Action::"POST", resource)
              when { context has grpc_service && context.grpc_service == "shop.Payments" };
            @id("d") permit (principal, action == Mesh::Action::"POST", resource)
              when { context has grpc_service && context has grpc_method
                     && context.grpc_service == "shop.Cart" && context.grpc_method == "Add" };
            "#,
        );
        let classes: Vec<String> = path_classes(&[&b]).into_iter().collect();
        assert_eq!(
            classes,
            [
                "/",
                "/admin",
                "/api/",
                "/shop.Cart/Add",
                "/shop.Payments/Call"
            ]
        );
    }

    #[test]
    fn a_bundle_without_paths_has_only_the_root_class() {
        let b = bundle(r#"@id("a") permit (principal, action, resource);"#);
        assert_eq!(path_classes(&[&b]).len(), 1);
    }
}
