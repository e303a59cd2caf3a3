//! Which parts of the request context a policy reads.
//!
//! Building a Cedar context costs about as much as evaluating a policy (an `ip(…)` value, a
//! headers entity), so a decision builds only the parts its candidate policies read. Policies
//! can only reach context attributes by name (`context.path`, `context has path`,
//! `context["path"]`); any other use of `context` (comparing the whole record, say) counts as
//! reading everything, and so does any name this module does not know. Erring that way only
//! costs time, never correctness.

/// A set of context parts, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs(u8);

impl Needs {
    pub(crate) const PEER: Needs = Needs(1);
    pub(crate) const SOURCE_IP: Needs = Needs(1 << 1);
    pub(crate) const PATH: Needs = Needs(1 << 2);
    pub(crate) const HOST: Needs = Needs(1 << 3);
    pub(crate) const QUERY: Needs = Needs(1 << 4);
    pub(crate) const HEADERS: Needs = Needs(1 << 5);
    pub(crate) const GRPC: Needs = Needs(1 << 6);
    pub(crate) const USER: Needs = Needs(1 << 7);
    pub(crate) const ALL: Needs = Needs(u8::MAX);
    /// The parts that can change from one request to the next between the same caller and
    /// target (peer ID and source address are fixed per connection): a decision reading none
    /// of them is the same for every request of its action, and is made once.
    pub(crate) const PER_REQUEST: Needs = Needs(
        Self::PATH.0 | Self::HOST.0 | Self::QUERY.0 | Self::HEADERS.0 | Self::GRPC.0 | Self::USER.0,
    );

    /// The per-request parts a path sample does not fix.
    pub(crate) const UNSAMPLED: Needs =
        Needs(Self::HOST.0 | Self::QUERY.0 | Self::HEADERS.0 | Self::USER.0);

    pub(crate) fn has(self, part: Needs) -> bool {
        self.0 & part.0 == part.0
    }

    pub(crate) fn reads_any(self, parts: Needs) -> bool {
        self.0 & parts.0 != 0
    }

    pub(crate) fn union(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }

    fn of_attribute(name: &str) -> Needs {
        match name {
            "peer_spiffe_id" => Needs::PEER,
            "source_ip" => Needs::SOURCE_IP,
            "path" => Needs::PATH,
            "host" => Needs::HOST,
            "query" => Needs::QUERY,
            "headers" => Needs::HEADERS,
            "grpc_service" | "grpc_method" => Needs::GRPC,
            "user" => Needs::USER,
            _ => Needs::ALL,
        }
    }

    /// What the policy `text` reads from `context`.
    pub(crate) fn of_policy(text: &str) -> Needs {
        let mut needs = Needs::default();
        let bytes = text.as_bytes();
        for (at, _) in text.match_indices("context") {
            let before_ok = at == 0 || !is_ident(bytes[at - 1]);
            let after = &text[at + "context".len()..];
            if !before_ok || after.as_bytes().first().is_some_and(|b| is_ident(*b)) {
                continue;
            }
            needs = needs.union(match attribute_after(after) {
                Some(name) => Needs::of_attribute(name),
                None => Needs::ALL,
            });
        }
        needs
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The attribute named right after `context`: `.name`, `has name`, `has "name"` or
/// `["name"]`.
fn attribute_after(rest: &str) -> Option<&str> {
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix('.') {
        return ident(r.trim_start());
    }
    if let Some(r) = rest.strip_prefix("has") {
        let r = r.trim_start();
        return match r.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').map(|(name, _)| name),
            None => ident(r),
        };
    }
    if let Some(r) = rest.strip_prefix('[') {
        let r = r.trim_start().strip_prefix('"')?;
        return r.split_once('"').map(|(name, _)| name);
    }
    None
}

fn ident(s: &str) -> Option<&str> {
    let end = s.bytes().position(|b| !is_ident(b)).unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_found_in_every_form() {
        let n = Needs::of_policy(
            r#"permit(principal, action, resource) when { context.path like "/a*" &&
               context has user && context["host"] == "x" && context has "grpc_method" };"#,
        );
        assert!(n.has(Needs::PATH) && n.has(Needs::USER) && n.has(Needs::HOST));
        assert!(n.has(Needs::GRPC));
        assert!(!n.has(Needs::SOURCE_IP) && !n.has(Needs::HEADERS));
        assert_eq!(
            Needs::of_policy("permit(principal, action, resource);"),
            Needs::default()
        );
    }

    #[test]
    fn per_request_parts_are_told_apart_from_per_connection_ones() {
        let connection = Needs::of_policy(
            r#"permit(principal, action, resource) when {
               context.source_ip.isLoopback() && context.peer_spiffe_id like "spiffe://a/*" };"#,
        );
        assert!(!connection.reads_any(Needs::PER_REQUEST));
        for read in ["path", "host", "query", "headers", "grpc_service", "user"] {
            let n = Needs::of_policy(&format!(
                "permit(principal, action, resource) when {{ context has {read} }};"
            ));
            assert!(n.reads_any(Needs::PER_REQUEST), "{read}");
        }
        assert!(Needs::ALL.reads_any(Needs::PER_REQUEST));
    }

    #[test]
    fn whole_record_use_and_unknown_names_need_everything() {
        for text in [
            r#"permit(principal, action, resource) when { context == {} };"#,
            r#"permit(principal, action, resource) when { context.brand_new };"#,
            r#"permit(principal, action, resource) when { [context].contains(context) };"#,
        ] {
            assert_eq!(Needs::of_policy(text), Needs::ALL, "{text}");
        }
        // Words that merely contain `context` are not reads.
        assert_eq!(
            Needs::of_policy(
                r#"permit(principal, action, resource) when { principal.contextual == "x" };"#
            ),
            Needs::default()
        );
    }
}
