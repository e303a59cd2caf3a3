//! The authorizer: plain domain inputs in, a [`Decision`] out. Never a `Result`: anything that
//! goes wrong (an unknown method, an entity that does not fit the schema, a policy that errors
//! while evaluating) is a deny that says why. Default deny; `forbid` wins.
//!
//! Cedar is handed only the policies whose scope fits the request (see [`crate::index`]), and
//! `connect` decisions are remembered per caller and target for the life of the bundle.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use foldhash::fast::RandomState;
use signet_spiffe::SpiffeId;

use crate::bundle::PolicyBundle;
use crate::index::PolicyIndex;
use crate::needs::Needs;
use crate::scope::{ActionTable, MeshTypes, ScopeQuery};
/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Allowed by at least one permit and no forbid.
    Allow,
    /// Denied: by a forbid, by no permit (default deny), or by an error.
    Deny,
}

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The policies that determined the decision: the permits that allowed it, the forbids
    /// that denied it, or the policies whose evaluation failed. Empty for a default deny.
    pub policies: Vec<String>,
    /// What went wrong, if anything did (a non-empty list always means deny).
    pub errors: Vec<String>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The determining policy ids joined by commas, or `default-deny` when none decided.
    pub fn reason(&self) -> String {
        if self.policies.is_empty() {
            "default-deny".to_owned()
        } else {
            self.policies.join(",")
        }
    }

    fn default_deny() -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            errors: vec![message.into()],
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = match self.effect {
            Effect::Allow => "ALLOW",
            Effect::Deny => "DENY",
        };
        write!(f, "{effect} ({})", self.reason())
    }
}

/// The calling workload (the TLS peer).
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    /// Its verified SPIFFE ID.
    pub id: Option<&'a SpiffeId>,
    /// Its own service name, when the mesh knows it.
    pub service: Option<&'a str>,
    /// Its labels.
    pub labels: &'a [(String, String)],
    /// Of another trust domain this mesh federates with: it belongs to none of this mesh's
    /// namespaces (its SPIFFE ID's `/ns/<ns>/` names the other mesh's), and only a permit
    /// that names its trust domain (its full SPIFFE ID, or the domain itself) allows it.
    pub foreign: bool,
}

/// The destination service.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Mesh-unique service name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The port the request arrived on.
    pub port: u16,
    /// Its labels.
    pub labels: &'a [(String, String)],
}

/// End-user claims from a verified JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub sub: String,
    /// `iss`.
    pub iss: String,
    /// Group memberships.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Any other string claims, readable as tags.
    pub other: Vec<(String, String)>,
}

/// An HTTP (or gRPC) request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// Method, upper case (`GET`).
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Host (`:authority`).
    pub host: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Headers; names are lower-cased before evaluation. A repeated header's values are
    /// joined with `,`.
    pub headers: Headers<'a>,
    /// Source address of the connection.
    pub source_ip: IpAddr,
    /// End-user claims, when a JWT was verified.
    pub claims: Option<&'a Claims>,
}

/// A request's headers: given, or made only when a candidate policy reads them (most
/// decisions do not, and a proxy would otherwise copy every header of every request).
#[derive(Clone, Copy)]
pub enum Headers<'a> {
    /// Name/value pairs.
    Pairs(&'a [(String, String)]),
    /// Called at most once per decision, and only when a candidate policy reads headers.
    Lazy(&'a dyn Fn() -> Vec<(String, String)>),
}

impl Headers<'_> {
    /// No headers.
    pub const NONE: Headers<'static> = Headers::Pairs(&[]);

    fn joined(&self) -> Vec<(String, String)> {
        match self {
            Headers::Pairs(pairs) => joined_headers(pairs),
            Headers::Lazy(make) => joined_headers(&make()),
        }
    }
}

impl<'a> From<&'a [(String, String)]> for Headers<'a> {
    fn from(pairs: &'a [(String, String)]) -> Self {
        Headers::Pairs(pairs)
    }
}

impl<'a> From<&'a Vec<(String, String)>> for Headers<'a> {
    fn from(pairs: &'a Vec<(String, String)>) -> Self {
        Headers::Pairs(pairs)
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Headers::Pairs(pairs) => f.debug_tuple("Pairs").field(pairs).finish(),
            Headers::Lazy(_) => f.write_str("Lazy"),
        }
    }
}

/// Prepared caller/target pairs kept before the cache starts over. Each holds a few small
/// entities; a proxy sees far fewer distinct peers than this.
const MAX_PREPARED: usize = 8_192;

/// Decides requests under one bundle. Cheap to clone; clones share the index and caches.
#[derive(Debug, Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bundle: Arc<PolicyBundle>,
    /// By policy id: the trust domains each policy names (in a SPIFFE ID or as a string).
    named_domains: HashMap<String, std::collections::HashSet<String>>,
    /// `None`: every decision hands Cedar the whole bundle and nothing is cached.
    index: Option<PolicyIndex>,
    /// By a hash of the key's parts, so a lookup allocates nothing.
    prepared: RwLock<PreparedCache>,
    hasher: RandomState,
}

/// Prepared inputs by the hash of their key; a bucket holds every key with that hash.
type PreparedCache = HashMap<u64, Vec<(PreparedKey, Arc<Prepared>)>, RandomState>;

/// Everything about a caller, a target and a source address that decisions depend on.
#[derive(Debug, Clone)]
struct PreparedKey {
    peer: SpiffeId,
    foreign: bool,
    service: Option<String>,
    caller_labels: Vec<(String, String)>,
    target: String,
    namespace: String,
    port: u16,
    target_labels: Vec<(String, String)>,
    source_ip: IpAddr,
}

impl PreparedKey {
    fn hash(
        state: &RandomState,
        peer: &SpiffeId,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> u64 {
        let mut h = state.build_hasher();
        peer.as_str().hash(&mut h);
        caller.foreign.hash(&mut h);
        caller.service.hash(&mut h);
        caller.labels.hash(&mut h);
        target.name.hash(&mut h);
        target.namespace.hash(&mut h);
        target.port.hash(&mut h);
        target.labels.hash(&mut h);
        source_ip.hash(&mut h);
        h.finish()
    }

    fn matches(
        &self,
        peer: &SpiffeId,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> bool {
        self.peer == *peer
            && self.foreign == caller.foreign
            && self.service.as_deref() == caller.service
            && self.caller_labels == caller.labels
            && self.target == target.name
            && self.namespace == target.namespace
            && self.port == target.port
            && self.target_labels == target.labels
            && self.source_ip == source_ip
    }

    fn new(peer: &SpiffeId, caller: &Caller<'_>, target: &Target<'_>, source_ip: IpAddr) -> Self {
        Self {
            peer: peer.clone(),
            foreign: caller.foreign,
            service: caller.service.map(str::to_owned),
            caller_labels: caller.labels.to_vec(),
            target: target.name.to_owned(),
            namespace: target.namespace.to_owned(),
            port: target.port,
            target_labels: target.labels.to_vec(),
            source_ip,
        }
    }
}

/// The Cedar pieces that stay the same for every request between one caller and one target
/// from one address, built once: evaluating Cedar values (an `ip(…)` above all) costs more
/// than deciding on a handful of policies.
#[derive(Debug)]
struct Prepared {
    principal: EntityUid,
    resource: EntityUid,
    /// The caller, the target and their namespaces.
    entities: Entities,
    /// `entities` plus one action's entities, by action number, made on first use: Cedar
    /// walks every entity of a request, so each request carries only its own action.
    with_action: Vec<OnceLock<Result<Entities, String>>>,
    peer: RestrictedExpression,
    source_ip: RestrictedExpression,
    /// The `connect` decision, once made.
    connect: OnceLock<Decision>,
    /// By action number: the decision for requests when the candidate policies read nothing
    /// that changes between requests (`Needs::PER_REQUEST`), once made.
    settled: Vec<OnceLock<Decision>>,
}

impl Prepared {
    fn new(
        peer: &SpiffeId,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> Result<Self, String> {
        let (principal, resource, entities) = base_entities(peer, caller, target);
        Ok(Self {
            principal,
            resource,
            entities: Entities::from_entities(entities, None).map_err(|e| e.to_string())?,
            with_action: (0..ActionTable::get().len())
                .map(|_| OnceLock::new())
                .collect(),
            peer: string(peer.as_str()),
            source_ip: RestrictedExpression::new_ip(source_ip.to_string()),
            connect: OnceLock::new(),
            settled: (0..ActionTable::get().len())
                .map(|_| OnceLock::new())
                .collect(),
        })
    }

    /// The Cedar request and entities for `action`, with the context parts in `needs`.
    fn cedar(
        &self,
        action: usize,
        ask: Ask<'_>,
        needs: Needs,
    ) -> Result<(Request, Entities), String> {
        let mut context = Vec::with_capacity(8);
        if needs.has(Needs::PEER) {
            context.push(("peer_spiffe_id".to_owned(), self.peer.clone()));
        }
        if needs.has(Needs::SOURCE_IP) {
            context.push(("source_ip".to_owned(), self.source_ip.clone()));
        }
        let base = self
            .with_action
            .get(action)
            .ok_or("unknown action")?
            .get_or_init(|| {
                self.entities
                    .clone()
                    .add_entities(ActionTable::get().entities(action).iter().cloned(), None)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let entities = match ask {
            Ask::Connect(_) => base.clone(),
            Ask::Http(request) => {
                let extra = http_context(request, needs, &mut context);
                if extra.is_empty() {
                    base.clone()
                } else {
                    base.clone()
                        .add_entities(extra, None)
                        .map_err(|e| e.to_string())?
                }
            }
        };
        let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
        let request = Request::new(
            self.principal.clone(),
            ActionTable::get().uid(action).clone(),
            self.resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// What is being decided, beyond who calls whom.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ask<'a> {
    Connect(IpAddr),
    Http(&'a HttpRequest<'a>),
}

impl Ask<'_> {
    pub(crate) fn action(&self) -> &str {
        match self {
            Ask::Connect(_) => "connect",
            Ask::Http(r) => r.method,
        }
    }

    fn source_ip(&self) -> IpAddr {
        match self {
            Ask::Connect(ip) => *ip,
            Ask::Http(r) => r.source_ip,
        }
    }
}

/// By policy id, the trust domains each policy names: every string it holds (an entity id,
/// a literal) that is a SPIFFE ID contributes its trust domain, and every other string
/// itself (`principal.trust_domain == "partner.example"`). Read from Cedar's JSON form, so
/// comments and formatting do not count.
fn named_domains(set: &PolicySet) -> HashMap<String, std::collections::HashSet<String>> {
    fn strings(value: &serde_json::Value, out: &mut std::collections::HashSet<String>) {
        match value {
            serde_json::Value::String(s) => match s.strip_prefix("spiffe://") {
                Some(rest) => {
                    out.insert(rest.split('/').next().unwrap_or(rest).to_owned());
                }
                None => {
                    out.insert(s.clone());
                }
            },
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    set.policies()
        .map(|p| {
            let mut names = std::collections::HashSet::new();
            if let Ok(json) = p.to_json() {
                strings(&json, &mut names);
            }
            (p.id().to_string(), names)
        })
        .collect()
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn tags(pairs: &[(String, String)]) -> Vec<(String, RestrictedExpression)> {
    pairs.iter().map(|(k, v)| (k.clone(), string(v))).collect()
}

impl Authorizer {
    /// An authorizer for `bundle`, with its policy index built now.
    pub fn new(bundle: Arc<PolicyBundle>) -> Self {
        let index = PolicyIndex::build(bundle.policies());
        Self::with_index(bundle, Some(index))
    }

    /// An authorizer that hands Cedar the whole bundle for every decision, with no index and
    /// no cache: the reference the indexed authorizer is tested against.
    pub fn exhaustive(bundle: Arc<PolicyBundle>) -> Self {
        Self::with_index(bundle, None)
    }

    fn with_index(bundle: Arc<PolicyBundle>, index: Option<PolicyIndex>) -> Self {
        Self {
            inner: Arc::new(Inner {
                named_domains: named_domains(bundle.policies()),
                bundle,
                index,
                prepared: RwLock::new(HashMap::default()),
                hasher: RandomState::default(),
            }),
        }
    }

    /// The bundle decisions are made under.
    pub fn bundle(&self) -> &Arc<PolicyBundle> {
        &self.inner.bundle
    }

    /// May `caller` open a connection to `target`? Remembered per caller, target and source
    /// address for the life of this authorizer (that is, of its bundle).
    pub fn connect(&self, caller: &Caller<'_>, target: &Target<'_>, source_ip: IpAddr) -> Decision {
        self.decide(caller, target, Ask::Connect(source_ip))
    }

    /// May `caller` make `request` to `target`?
    pub fn request(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        request: &HttpRequest<'_>,
    ) -> Decision {
        self.decide(caller, target, Ask::Http(request))
    }

    /// How many policies Cedar is handed for this request (benchmarks report it).
    #[cfg(feature = "synthetic")]
    pub fn candidates(&self, caller: &Caller<'_>, target: &Target<'_>, action: &str) -> usize {
        let table = ActionTable::get();
        match (caller.id, table.request_action(action), &self.inner.index) {
            (Some(peer), Some(action), Some(index)) => index
                .candidates(&scope_query(peer, caller.foreign, action, target))
                .len(),
            _ => self.inner.bundle.len(),
        }
    }

    /// The parts of a request (`path`, `host`, `query`, `headers`, `grpc`, `user`) that the
    /// policies which can apply to `caller` doing `action` on `target` read: a decision
    /// reading none of them is the same for every such request.
    pub fn request_reads(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        action: &str,
    ) -> Vec<&'static str> {
        let table = ActionTable::get();
        let needs = match (caller.id, table.request_action(action), &self.inner.index) {
            (Some(peer), Some(action), Some(index)) => index
                .needs_of(&index.candidates(&scope_query(peer, caller.foreign, action, target))),
            _ => Needs::ALL,
        };
        [
            (Needs::PATH, "path"),
            (Needs::HOST, "host"),
            (Needs::QUERY, "query"),
            (Needs::HEADERS, "headers"),
            (Needs::GRPC, "grpc"),
            (Needs::USER, "user"),
        ]
        .into_iter()
        .filter(|(part, _)| needs.has(*part))
        .map(|(_, name)| name)
        .collect()
    }

    pub(crate) fn decide(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        ask: Ask<'_>,
    ) -> Decision {
        let decision = self.decide_any(caller, target, ask);
        match caller.id {
            Some(peer) if caller.foreign && decision.is_allowed() => {
                self.named_or_denied(peer, decision)
            }
            _ => decision,
        }
    }

    /// A foreign caller's allow stands only when a permit that allowed it names the
    /// caller's trust domain: a policy written for this mesh's own workloads (`principal`
    /// unconstrained, say) never lets another mesh in.
    fn named_or_denied(&self, peer: &SpiffeId, decision: Decision) -> Decision {
        let td = peer.trust_domain_str();
        let named = decision.policies.iter().any(|id| {
            self.inner
                .named_domains
                .get(id)
                .is_some_and(|domains| domains.contains(td))
        });
        if named {
            decision
        } else {
            Decision {
                effect: Effect::Deny,
                policies: Vec::new(),
                errors: vec![format!(
                    "`{peer}` is of federated trust domain `{td}`, and no permit that allowed it names that domain"
                )],
            }
        }
    }

    fn decide_any(&self, caller: &Caller<'_>, target: &Target<'_>, ask: Ask<'_>) -> Decision {
        let Some(peer) = caller.id else {
            return Decision::error("no verified peer identity");
        };
        let table = ActionTable::get();
        let Some(action) = table.request_action(ask.action()) else {
            return Decision::error(format!("unknown action `{}`", ask.action()));
        };
        let Some(index) = &self.inner.index else {
            return match Prepared::new(peer, caller, target, ask.source_ip()) {
                Ok(prepared) => decide_with(
                    &prepared,
                    action,
                    ask,
                    Needs::ALL,
                    self.inner.bundle.policies(),
                ),
                Err(e) => Decision::error(e),
            };
        };
        let candidates = index.candidates(&scope_query(peer, caller.foreign, action, target));
        if candidates.is_empty() {
            return Decision::default_deny();
        }
        let prepared = match self.prepared(peer, caller, target, ask.source_ip()) {
            Ok(p) => p,
            Err(e) => return Decision::error(e),
        };
        let needs = index.needs_of(&candidates);
        let decide = || decide_with(&prepared, action, ask, needs, &index.set_of(&candidates));
        match ask {
            Ask::Connect(_) => prepared.connect.get_or_init(decide).clone(),
            Ask::Http(_) if !needs.reads_any(Needs::PER_REQUEST) => {
                match prepared.settled.get(action) {
                    Some(settled) => settled.get_or_init(decide).clone(),
                    None => decide(),
                }
            }
            Ask::Http(_) => decide(),
        }
    }

    fn prepared(
        &self,
        peer: &SpiffeId,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> Result<Arc<Prepared>, String> {
        let hash = PreparedKey::hash(&self.inner.hasher, peer, caller, target, source_ip);
        let hit = self.inner.prepared.read().ok().and_then(|cache| {
            cache.get(&hash).and_then(|bucket| {
                bucket
                    .iter()
                    .find(|(k, _)| k.matches(peer, caller, target, source_ip))
                    .map(|(_, p)| Arc::clone(p))
            })
        });
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let prepared = Arc::new(Prepared::new(peer, caller, target, source_ip)?);
        if let Ok(mut cache) = self.inner.prepared.write() {
            if cache.len() >= MAX_PREPARED {
                cache.clear();
            }
            let key = PreparedKey::new(peer, caller, target, source_ip);
            cache
                .entry(hash)
                .or_default()
                .push((key, Arc::clone(&prepared)));
        }
        Ok(prepared)
    }
}

fn decide_with(
    prepared: &Prepared,
    action: usize,
    ask: Ask<'_>,
    needs: Needs,
    set: &PolicySet,
) -> Decision {
    match prepared.cedar(action, ask, needs) {
        Ok((request, entities)) => evaluate(&request, set, &entities),
        Err(e) => Decision::error(e),
    }
}

pub(crate) fn scope_query<'a>(
    peer: &'a SpiffeId,
    foreign: bool,
    action: usize,
    target: &Target<'a>,
) -> ScopeQuery<'a> {
    ScopeQuery {
        peer: peer.as_str(),
        // Another mesh's `/ns/<ns>/` is not one of this mesh's namespaces.
        peer_namespace: (!foreign)
            .then(|| peer.namespace_and_account().map(|(ns, _)| ns))
            .flatten(),
        action,
        service: target.name,
        service_namespace: target.namespace,
    }
}

/// The principal, the resource, and the entities every decision between them needs: the
/// caller, the target and their namespaces.
fn base_entities(
    peer: &SpiffeId,
    caller: &Caller<'_>,
    target: &Target<'_>,
) -> (EntityUid, EntityUid, Vec<Entity>) {
    let types = MeshTypes::get();
    let mut entities = Vec::with_capacity(4);
    let (ns, sa) = if caller.foreign {
        ("", "")
    } else {
        peer.namespace_and_account().unwrap_or(("", ""))
    };
    let principal = uid(&types.workload, peer.as_str());
    let principal_ns = (!ns.is_empty()).then(|| uid(&types.namespace, ns));
    let resource = uid(&types.service, target.name);
    let target_ns = uid(&types.namespace, target.namespace);
    entities.push(workload_entity(
        &principal,
        principal_ns.clone(),
        peer,
        ns,
        sa,
        caller,
    ));
    entities.push(service_entity(&resource, target_ns.clone(), target));
    entities.push(Entity::with_uid(target_ns.clone()));
    if let Some(p) = principal_ns.filter(|p| *p != target_ns) {
        entities.push(Entity::with_uid(p));
    }
    (principal, resource, entities)
}

fn workload_entity(
    uid: &EntityUid,
    namespace: Option<EntityUid>,
    peer: &SpiffeId,
    ns: &str,
    sa: &str,
    caller: &Caller<'_>,
) -> Entity {
    let attrs = [
        ("spiffe_id", string(peer.as_str())),
        ("trust_domain", string(peer.trust_domain_str())),
        ("namespace", string(ns)),
        ("service_account", string(sa)),
        ("service", string(caller.service.unwrap_or(""))),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    entity(uid, attrs, namespace, caller.labels)
}

fn service_entity(uid: &EntityUid, namespace: EntityUid, target: &Target<'_>) -> Entity {
    let attrs = [
        ("name", string(target.name)),
        ("namespace", string(target.namespace)),
        (
            "port",
            RestrictedExpression::new_long(i64::from(target.port)),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    entity(uid, attrs, Some(namespace), target.labels)
}

fn entity<const N: usize>(
    uid: &EntityUid,
    attrs: [(String, RestrictedExpression); N],
    parent: Option<EntityUid>,
    labels: &[(String, String)],
) -> Entity {
    Entity::new_with_tags(uid.clone(), attrs, parent, tags(labels))
        // Only fails on an attribute value that is an unresolved expression; these are
        // literals. Should it ever fail, the entity without attributes makes every policy
        // reading them error, which denies.
        .unwrap_or_else(|_| Entity::with_uid(uid.clone()))
}

/// Adds the parts of a request's context in `needs` to `context`; returns the entities they
/// refer to (its headers and, when a JWT was verified, its user).
fn http_context(
    request: &HttpRequest<'_>,
    needs: Needs,
    context: &mut Vec<(String, RestrictedExpression)>,
) -> Vec<Entity> {
    let mut entities = Vec::with_capacity(2);
    let types = MeshTypes::get();
    for (part, name, value) in [
        (Needs::PATH, "path", request.path),
        (Needs::HOST, "host", request.host),
        (Needs::QUERY, "query", request.query),
    ] {
        if needs.has(part) {
            context.push((name.to_owned(), string(value)));
        }
    }
    if needs.has(Needs::HEADERS) {
        let headers = uid(&types.headers, "request");
        entities.push(entity(&headers, [], None, &request.headers.joined()));
        context.push((
            "headers".to_owned(),
            RestrictedExpression::new_entity_uid(headers),
        ));
    }
    if needs.has(Needs::GRPC)
        && let Some((service, method)) = grpc_parts(request.path)
    {
        context.push(("grpc_service".to_owned(), string(service)));
        context.push(("grpc_method".to_owned(), string(method)));
    }
    if needs.has(Needs::USER)
        && let Some(claims) = request.claims
    {
        let user = uid(&types.user, &format!("{}#{}", claims.iss, claims.sub));
        let set = |v: &[String]| RestrictedExpression::new_set(v.iter().map(|s| string(s)));
        let attrs = [
            ("sub", string(&claims.sub)),
            ("iss", string(&claims.iss)),
            ("groups", set(&claims.groups)),
            ("roles", set(&claims.roles)),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        entities.push(entity(&user, attrs, None, &claims.other));
        context.push((
            "user".to_owned(),
            RestrictedExpression::new_entity_uid(user),
        ));
    }
    entities
}

/// Header names lower-cased; a repeated header's values joined with `,`.
fn joined_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut joined: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        match joined.iter_mut().find(|(name, _)| *name == k) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            None => joined.push((k, v.clone())),
        }
    }
    joined
}

/// Cedar's answer as a [`Decision`], with any evaluation error turned into a deny.
pub(crate) fn evaluate(request: &Request, set: &PolicySet, entities: &Entities) -> Decision {
    let response = cedar_policy::Authorizer::new().is_authorized(request, set, entities);
    let errors: Vec<_> = response.diagnostics().errors().collect();
    if !errors.is_empty() {
        let mut policies: Vec<String> = errors
            .iter()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(p) => {
                    p.policy_id().to_string()
                }
            })
            .collect();
        policies.sort();
        policies.dedup();
        // Cedar reports errors in hash-map order; sorted, equal decisions compare equal.
        let mut errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        errors.sort();
        return Decision {
            effect: Effect::Deny,
            policies,
            errors,
        };
    }
    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    policies.sort();
    Decision {
        effect: match response.decision() {
            cedar_policy::Decision::Allow => Effect::Allow,
            cedar_policy::Decision::Deny => Effect::Deny,
        },
        policies,
        errors: Vec::new(),
    }
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
fn grpc_parts(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
