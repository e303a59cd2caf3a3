//! A SPIFFE Workload API client on a proxy's Unix socket, as a Go or Rust application would
//! call it (`localhost` as the HTTP/2 authority).

use std::path::Path;

use tonic::transport::Channel;

/// A gRPC channel on `socket`, for `SpiffeWorkloadApiClient::new`.
pub async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("a Workload API socket")
}

/// `message` with the specification's security header (`workload.spiffe.io: true`).
pub fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// This process's user id, as the kernel reports it to a socket's server.
pub fn uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|uid| uid.parse().ok())
        })
        .expect("a uid in /proc/self/status")
}
