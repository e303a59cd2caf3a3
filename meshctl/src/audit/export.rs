//! `meshctl audit export --format jsonl|ocsf|cef|syslog|splunk-hec|elastic [--since T] [--until T]
//! [--output FILE | --to tcp://HOST:PORT | --to tls://HOST:PORT [--to-ca FILE]] [--cursor FILE]
//! [--data-dir DIR]`: the control plane's audit records (or, with `--data-dir`, those in the
//! spools under a directory) in a SIEM's format, appended to a file or streamed to a syslog
//! receiver (RFC 5424 messages, octet-counted framing as RFC 5425 requires on TCP and TLS).
//! With `--cursor`, the id of the last record written is kept in the file after each batch is
//! durably written or sent, and the next run starts after it: a restarted exporter neither
//! loses nor repeats records.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use signet_audit::export;
use signet_audit::record::Record;

use super::deliver::{Api, Https};
use crate::Outcome;
use crate::cp::Connection;

/// Records per request to the control plane.
const PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// The records' own JSON lines.
    Jsonl,
    /// OCSF 1.5.0 events, one JSON object per line (API Activity, Network Activity,
    /// Entity Management, Event Log Activity).
    Ocsf,
    /// ArcSight Common Event Format.
    Cef,
    /// RFC 5424 syslog messages.
    Syslog,
    /// Splunk HTTP Event Collector events (one JSON object per line).
    SplunkHec,
    /// Elasticsearch bulk `create` actions with ECS documents (NDJSON).
    Elastic,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Only records at or after this time (RFC 3339, or a duration ago: 30m, 2h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records at or before this time (RFC 3339, or a duration ago).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Append to this file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "to",
        required_unless_present = "to"
    )]
    output: Option<PathBuf>,
    /// Send to a receiver: tcp://HOST:PORT or tls://HOST:PORT (syslog), https://HOST:PORT[/PATH]
    /// (splunk-hec: Splunk's HTTP Event Collector; elastic: Elasticsearch's bulk API).
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Roots (PEM) the tls:// or https:// receiver's certificate must chain to (a system
    /// bundle such as /etc/ssl/certs/ca-certificates.crt for a public CA).
    #[arg(long, value_name = "FILE")]
    to_ca: Option<PathBuf>,
    /// The receiver's credential: the HEC token (splunk-hec), an API key (elastic).
    #[arg(
        long,
        env = "SIGNET_EXPORT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    to_token: Option<String>,
    /// Keep and resume from the last exported record's id in this file.
    #[arg(long, value_name = "FILE")]
    cursor: Option<PathBuf>,
    /// The HOSTNAME field of syslog messages (default: this machine's name).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Export the records in the spools under this directory (a proxy's state dir, a
    /// control plane's data dir, a demo's; copied files for forensics) instead of asking
    /// the control plane: one pass, each record once, by writer and sequence number.
    #[arg(long, value_name = "DIR", conflicts_with = "cursor")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

/// Where the events go.
enum Sink {
    File(std::fs::File),
    Tcp(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
    /// HEC or bulk over HTTPS: a batch is buffered, then posted at commit.
    Https(Box<Https>, Vec<u8>),
}

impl Sink {
    fn open(args: &ExportArgs) -> anyhow::Result<Self> {
        if let Some(path) = &args.output {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening `{}`", path.display()))?;
            return Ok(Sink::File(file));
        }
        let to = args
            .to
            .as_deref()
            .ok_or_else(|| anyhow!("give --output or --to"))?;
        let (scheme, address) = to.split_once("://").ok_or_else(|| {
            anyhow!("--to `{to}` must be tcp://HOST:PORT, tls://HOST:PORT or https://HOST:PORT")
        })?;
        if scheme == "https" {
            let api = match args.format {
                Format::SplunkHec => Api::SplunkHec,
                Format::Elastic => Api::ElasticBulk,
                other => bail!(
                    "--to https:// takes --format splunk-hec or elastic, not {}",
                    other
                        .to_possible_value()
                        .map_or_else(String::new, |v| v.get_name().to_owned())
                ),
            };
            let ca = args
                .to_ca
                .as_ref()
                .ok_or_else(|| anyhow!("https:// needs --to-ca (the receiver's roots)"))?;
            let https = Https::new(api, to, args.to_token.clone(), client_config(ca)?)?;
            return Ok(Sink::Https(Box::new(https), Vec::new()));
        }
        if matches!(args.format, Format::SplunkHec | Format::Elastic) {
            bail!(
                "--format splunk-hec and elastic are sent with --to https://… (or written with --output)"
            );
        }
        let tcp = std::net::TcpStream::connect(address)
            .with_context(|| format!("connecting to {address}"))?;
        let _ = tcp.set_nodelay(true);
        match scheme {
            "tcp" => Ok(Sink::Tcp(tcp)),
            "tls" => {
                let ca = args
                    .to_ca
                    .as_ref()
                    .ok_or_else(|| anyhow!("tls:// needs --to-ca (the receiver's roots)"))?;
                Ok(Sink::Tls(Box::new(tls(address, ca, tcp)?)))
            }
            other => bail!("--to scheme `{other}`: tcp or tls"),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(bytes),
            Sink::Tcp(s) => s.write_all(bytes),
            Sink::Tls(s) => s.write_all(bytes),
            Sink::Https(_, batch) => {
                batch.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Makes what was written durable (file) or handed to the receiver (stream).
    fn commit(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => Ok(f.sync_data()?),
            Sink::Tcp(s) => Ok(s.flush()?),
            Sink::Tls(s) => Ok(s.flush()?),
            Sink::Https(https, batch) => {
                https.send(batch)?;
                batch.clear();
                Ok(())
            }
        }
    }
}

fn tls(
    address: &str,
    ca: &PathBuf,
    tcp: std::net::TcpStream,
) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let config = client_config(ca)?;
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| anyhow!("`{host}`: {e}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// TLS to a receiver whose certificate chains to the roots in `ca` and names its host.
fn client_config(ca: &PathBuf) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading `{}`", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("reading `{}`", ca.display()))?)
            .map_err(|e| anyhow!("`{}`: {e}", ca.display()))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(signet_spiffe::tls::provider())
            .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn render(format: Format, record: &Record, line: &str, hostname: &str) -> String {
    match format {
        Format::Jsonl => format!("{}\n", export::jsonl(line)),
        Format::Ocsf => format!("{}\n", signet_audit::ocsf::ocsf(record, line)),
        Format::Cef => format!("{}\n", export::cef(record)),
        Format::Syslog => export::octet_counted(&export::syslog(record, line, hostname)),
        Format::SplunkHec => format!("{}\n", export::splunk_hec(record, line, hostname)),
        Format::Elastic => format!("{}\n", export::elastic_bulk(record, line, "signet-audit")),
    }
}

pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<Outcome> {
    let since = args
        .since
        .as_deref()
        .map(|t| crate::duration::instant_ns(t, "--since"))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| crate::duration::instant_ns(t, "--until"))
        .transpose()?;
    let hostname = args.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    });
    let mut after: i64 = match &args.cursor {
        Some(path) if path.exists() => std::fs::read_to_string(path)
            .with_context(|| format!("reading cursor `{}`", path.display()))?
            .trim()
            .parse()
            .map_err(|_| anyhow!("cursor `{}` does not hold a record id", path.display()))?,
        _ => 0,
    };
    if let Some(dir) = &args.data_dir {
        return from_spools(args, dir, (since, until), &hostname);
    }
    let client = args.connection.client()?;
    let mut sink = Sink::open(args)?;
    let mut exported = 0u64;
    loop {
        let mut path = format!("/v1/audit?limit={PAGE}&after={after}&oldest=true");
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        if let Some(u) = until {
            path.push_str(&format!("&until={u}"));
        }
        let rows = client.get_as::<signet_cp::model::AuditPage>(&path)?.records;
        let mut out = String::new();
        let mut last = after;
        for row in &rows {
            let record: Record = serde_json::from_str(&row.line)
                .with_context(|| format!("record {} from the control plane", row.id))?;
            out.push_str(&render(args.format, &record, &row.line, &hostname));
            last = row.id;
        }
        if rows.is_empty() {
            break;
        }
        sink.write(out.as_bytes()).context("writing the export")?;
        sink.commit().context("delivering the export")?;
        exported += rows.len() as u64;
        after = last;
        if let Some(path) = &args.cursor {
            signet_spiffe::write_private(path, format!("{after}\n").as_bytes())
                .map_err(anyhow::Error::msg)?;
        }
        if rows.len() < PAGE as usize {
            break;
        }
    }
    report(
        &sink,
        &format!("exported {exported} records (last id {after})"),
    );
    Ok(Outcome::Success)
}

/// Exports the records in the spools under `dir` within `(since, until)`.
fn from_spools(
    args: &ExportArgs,
    dir: &std::path::Path,
    (since, until): (Option<u64>, Option<u64>),
    hostname: &str,
) -> anyhow::Result<Outcome> {
    let records: Vec<Record> = super::spools::records(dir, since.unwrap_or(0))?
        .into_iter()
        .filter(|r| until.is_none_or(|u| r.time <= u))
        .collect();
    let mut sink = Sink::open(args)?;
    for page in records.chunks(PAGE as usize) {
        let mut out = String::new();
        for record in page {
            // A record's line serializes back to the same bytes (fields in order, no
            // whitespace), so the formats that carry the original line carry it exactly.
            let line = serde_json::to_string(record).context("serializing a record")?;
            out.push_str(&render(args.format, record, &line, hostname));
        }
        sink.write(out.as_bytes()).context("writing the export")?;
        sink.commit().context("delivering the export")?;
    }
    report(
        &sink,
        &format!(
            "exported {} records from the spools under `{}`",
            records.len(),
            dir.display()
        ),
    );
    Ok(Outcome::Success)
}

/// What the export did, on stderr.
fn report(sink: &Sink, done: &str) {
    match sink {
        Sink::Https(https, _) if https.duplicates > 0 => {
            eprintln!("{done}; {} were already in the index", https.duplicates)
        }
        _ => eprintln!("{done}"),
    }
}
