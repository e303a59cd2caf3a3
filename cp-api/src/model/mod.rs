//! The operator REST API's request and response types: what `signet-cp`'s handlers send,
//! what `meshctl` and the web console read, and what `openapi.json` describes (its
//! conformance is tested in `tests/openapi_model.rs`). Built without the `server` feature,
//! so clients depend on the types and not on the server.
//!
//! **Times.** Every instant is Unix milliseconds (`i64`): fields named `*_at`, `since`,
//! `first`, `last`, `not_before`, `not_after`, `last_*`. Every duration is whole seconds in
//! a field named `*_seconds`. The one exception is the audit trail (`/v1/audit`): records
//! keep the Unix nanoseconds they were signed with (so `time` equals the signed line's),
//! and its query takes nanoseconds to match.
//!
//! **Absent is `null`** in answers: their optional fields are always sent, so each answer has
//! one shape. Request bodies leave unset optional fields out, and refuse unknown ones.
//!
//! **Errors.** Every refusal is an [`ErrorBody`] with a status that says which kind.
//!
//! **Compatibility.** Readers ignore fields they do not know, so a newer control plane can
//! add one without breaking an older `meshctl`; `tests/openapi_model.rs` keeps every field
//! the server sends documented.
//!
//! Every handler returns one of these types; `tests/openapi_model.rs` checks an example of
//! each against `openapi.json`, and `tests/routes.rs` reads a real server's answers back
//! as them.

mod audit;
mod authn;
mod ca;
mod enforcement;
mod error;
mod federation;
mod identity;
mod operators;
mod policies;
mod registry;
mod requests;
mod shadow;
mod stats;
mod status;
mod time;
mod traffic;
mod workloads;

pub use audit::{AuditKind, AuditPage, AuditRecord};
pub use authn::{AuthnApplied, AuthnDoc, AuthnState, ProviderDoc, ProviderKeys, ServiceAuthn};
pub use ca::{
    CaCheck, CaRotated, CaSetup, CaSetupRefused, CaStatus, ChainCertificate, IssuingCertificate,
    JwtKey, JwtKeyState, JwtRotation, JwtStatus, Root, RootState, Rotation, VaultAuthMethod,
    VaultStatus,
};
pub use enforcement::{Enforcement, PendingProxy};
pub use error::ErrorBody;
pub use federation::{
    Federation, FederationAdded, FederationList, FederationProfile, FederationRemoved,
};
pub use identity::{
    Access, ActionAccess, CurrentSvid, EffectiveAuthorization, FederatedBundle, Holder,
    IdentityReport, InboundAccess, IssueKind, IssuedCertificate, OutboundAccess, PathAccess,
    ServiceName, SvidIssued,
};
pub use operators::{
    Denied, DenyEntry, DenyList, OperatorAction, OperatorActions, SignInCode, TokenCreated,
};
pub use policies::{
    Applied, ChangeKind, DecisionDetail, DryRun, Gate, GateChange, PolicyFile, PolicyHistory,
    PolicySet, PolicyVersion, PolicyVersionFiles,
};
pub use registry::{
    AppHealth, Inventory, InventoryService, InventoryWorkload, Proxy, ProxyList, Service,
    ServiceLabels, ServiceList,
};
pub use requests::{
    AttestRequest, AuthnApplyRequest, DenyRequest, FederationAddRequest, LabelsRequest,
    PolicyApplyRequest, PolicyRollbackRequest, ShadowClearRequest, ShadowInstallRequest,
    ShadowPromoteRequest, SvidRequest, TokenRequest, TrafficApplyRequest, TrafficRollbackRequest,
};
pub use shadow::{
    Decision, ShadowCandidate, ShadowCleared, ShadowExample, ShadowFlow, ShadowInstalled,
    ShadowPromoted, ShadowReport, ShadowRunning,
};
pub use stats::{Stats, StatsBy, StatsRow};
pub use status::{Duty, PolicySummary, ProxyCounts, Replica, Status};
pub use time::rfc3339;
pub use traffic::{
    EndpointHealth, EndpointList, EndpointView, ObservedShare, SettingChange, SplitReport,
    SplitRoute, SplitShare, TrafficApplied, TrafficHistory, TrafficSettings, TrafficVersion,
};
pub use workloads::{AttestationSet, WorkloadSelectors, WorkloadSelectorsList};
