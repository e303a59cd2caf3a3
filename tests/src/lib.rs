//! Signet's end-to-end test harness: starts real control planes, proxies and echo apps on
//! 127.0.0.1.
//!
//! Empty for now: the proxy and control-plane issues add the harness and the tests.
