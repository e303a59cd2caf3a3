//! `meshctl`, the operator command line.
//!
//! Errors print one line, `meshctl: error: …`, and exit 1. `authz test` and `authz explain`
//! exit 0 for allow and 2 for deny, and `authz diff` exits 3 when access widens, so scripts
//! and pipelines can branch on the answer.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod authz;
mod cp;
mod demo;
mod duration;

#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about = "Operate a Signet mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, check and reason about Cedar policies; apply them to the control plane.
    #[command(subcommand)]
    Authz(authz::Authz),
    /// End-user authentication: JWT providers and the services that accept them.
    #[command(subcommand)]
    Authn(cp::authn::Authn),
    /// Traffic settings: routes, timeouts, retries, load balancing, circuit breaking,
    /// outlier detection.
    #[command(subcommand)]
    Traffic(cp::traffic::Traffic),
    /// The signed audit trail.
    #[command(subcommand)]
    Audit(audit::Audit),
    /// Join tokens for new proxies.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Workload identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// The certificate authority: Vault/OpenBao setup, status, rotation.
    #[command(subcommand)]
    Ca(cp::ca::Ca),
    /// Services in the registry, and their labels.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Other trust domains this mesh trusts, through their bundle endpoints.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Who may take a service's identity from its proxies' SPIFFE Workload API.
    #[command(subcommand)]
    Workload(WorkloadCommand),
    /// Proxies connected to the control plane.
    #[command(subcommand)]
    Proxies(ProxiesCommand),
    /// Control plane health, CA expiry, policy version, proxies in sync.
    Status(cp::lists::ListArgs),
    /// Live golden signals per service or per edge: success rate, requests per second,
    /// latency percentiles.
    Stats(cp::stats::StatsArgs),
    /// A one-time link that signs a browser into the web console as you.
    Console(cp::console::ConsoleArgs),
    /// Run a whole mesh on this machine: control plane, three services behind proxies,
    /// policies, traffic allowed and denied.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// A one-time join token for a proxy.
    Create(cp::token::CreateArgs),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Certificate, issuer chain, holders and effective authorization of an identity.
    Inspect(cp::identity::InspectArgs),
    /// Redeem a join token for an SVID made with a key kept here (an operator's client
    /// certificate).
    Issue(cp::identity::IssueArgs),
    /// Put a SPIFFE ID or a certificate serial on the deny-list every proxy enforces.
    Deny(cp::identity::DenyArgs),
}

#[derive(Debug, Subcommand)]
enum FederationCommand {
    /// Federate with another trust domain: fetch and keep its bundle from its endpoint.
    Add(cp::federation::AddArgs),
    /// The trust domains federated with, and their bundles' state.
    List(cp::federation::ListArgs),
    /// Stop trusting a trust domain, at once.
    Remove(cp::federation::RemoveArgs),
}

#[derive(Debug, Subcommand)]
enum WorkloadCommand {
    /// Set the selectors a calling process must match (`--selector unix:uid:1000`, repeated:
    /// every one), or `--clear` them; they replace the proxies' own configuration.
    Attest(cp::workload::AttestArgs),
    /// The selectors set, by service.
    List(cp::workload::ListArgs),
}

#[derive(Debug, Subcommand)]
enum ServicesCommand {
    /// List them.
    List(cp::lists::ListArgs),
    /// Set (`key=value`) and remove (`key-`) a service's labels; every proxy enforces them.
    Label(cp::labels::LabelArgs),
}

#[derive(Debug, Subcommand)]
enum ProxiesCommand {
    /// List them.
    List(cp::lists::ListArgs),
    /// A service's endpoints as its callers see them: health, ejection, load, latency.
    Endpoints(cp::traffic::EndpointsArgs),
}

/// How a command ended, beyond plain success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 2: the decision was deny (`authz test`, `authz explain`).
    Denied,
    /// Exit 3: the change widens access (`authz diff`).
    Widened,
}

impl Outcome {
    /// Success for an allow, Denied for a deny.
    pub(crate) fn of(decision: &signet_policy::Decision) -> Self {
        if decision.is_allowed() {
            Outcome::Success
        } else {
            Outcome::Denied
        }
    }
}

/// Output piped into a reader that stopped (`meshctl audit tail | head`) ends the command
/// quietly, as it would a C tool killed by SIGPIPE, instead of a panic's backtrace: Rust
/// ignores SIGPIPE, so `println!` panics on the closed pipe.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message without its usage block, on one line.
            let text = e.to_string();
            let message = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("meshctl: {message}");
            eprintln!("run `meshctl --help` for usage");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Authz(cmd) => authz::run(cmd),
        Command::Authn(cmd) => cp::authn::run(&cmd),
        Command::Traffic(cmd) => cp::traffic::run(&cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Token(TokenCommand::Create(args)) => cp::token::create(&args),
        Command::Identity(IdentityCommand::Inspect(args)) => cp::identity::inspect(&args),
        Command::Identity(IdentityCommand::Issue(args)) => cp::identity::issue(&args),
        Command::Identity(IdentityCommand::Deny(args)) => cp::identity::deny(&args),
        Command::Services(ServicesCommand::List(args)) => cp::lists::services(&args),
        Command::Services(ServicesCommand::Label(args)) => cp::labels::label(&args),
        Command::Workload(WorkloadCommand::Attest(args)) => cp::workload::attest(&args),
        Command::Federation(FederationCommand::Add(args)) => cp::federation::add(&args),
        Command::Federation(FederationCommand::List(args)) => cp::federation::list(&args),
        Command::Federation(FederationCommand::Remove(args)) => cp::federation::remove(&args),
        Command::Workload(WorkloadCommand::List(args)) => cp::workload::list(&args),
        Command::Proxies(ProxiesCommand::List(args)) => cp::lists::proxies(&args),
        Command::Proxies(ProxiesCommand::Endpoints(args)) => cp::traffic::endpoints(&args),
        Command::Status(args) => cp::lists::status(&args),
        Command::Stats(args) => cp::stats::run(&args),
        Command::Ca(cmd) => cp::ca::run(&cmd),
        Command::Console(args) => cp::console::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Denied) => ExitCode::from(2),
        Ok(Outcome::Widened) => ExitCode::from(3),
        Err(e) => {
            eprintln!("meshctl: error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
