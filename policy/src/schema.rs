//! The mesh's Cedar schema, compiled into every binary that evaluates policies.

use std::sync::OnceLock;

use cedar_policy::Schema;

/// The schema's text (`policy/schema/mesh.cedarschema`).
pub const MESH_SCHEMA: &str = include_str!("../schema/mesh.cedarschema");

/// The parsed mesh schema.
#[derive(Debug)]
pub struct MeshSchema {
    schema: Schema,
}

impl MeshSchema {
    /// The embedded schema, parsed once per process.
    pub fn embedded() -> &'static MeshSchema {
        static SCHEMA: OnceLock<MeshSchema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let (schema, _warnings) = Schema::from_cedarschema_str(MESH_SCHEMA)
                // INVARIANT (schema-parses): the embedded schema is a constant; the test
                // `embedded_schema_parses` fails the build's tests if it ever stops parsing.
                .unwrap_or_else(|e| unreachable!("embedded mesh schema is invalid: {e}"));
            MeshSchema { schema }
        })
    }

    /// The Cedar schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_parses() {
        let (schema, warnings) = Schema::from_cedarschema_str(MESH_SCHEMA).unwrap();
        assert_eq!(warnings.count(), 0);
        let actions: Vec<String> = schema.actions().map(ToString::to_string).collect();
        for a in [
            "connect", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "read", "write",
        ] {
            assert!(
                actions.contains(&format!("Mesh::Action::\"{a}\"")),
                "missing action {a}: {actions:?}"
            );
        }
        let _ = MeshSchema::embedded();
    }
}
