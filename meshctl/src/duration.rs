//! Durations on the command line: `30s`, `10m`, `1h`, `7d`.

use std::time::Duration;

/// Parses a whole number followed by s, m, h or d; zero is refused.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let bad = || format!("`{s}` is not a duration like 30s, 10m, 1h, 7d");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if secs == 0 {
        return Err("a duration must be more than zero".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

/// A point in time given on the command line as RFC 3339 (`2026-11-21T10:00:00Z`) or as a
/// duration ago (`2h`), in Unix nanoseconds; `flag` names the option in the error.
pub(crate) fn instant_ns(text: &str, flag: &str) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Ok(ago) = parse(text) {
        return Ok(now.saturating_sub(ago.as_secs()) * 1_000_000_000);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            anyhow::anyhow!("{flag} `{text}` is neither RFC 3339 nor a duration like 2h")
        })?;
    // Records carry Unix nanoseconds in a u64: 1970 to 2554. Outside that a time would
    // silently become the epoch and turn a window into everything or nothing.
    u64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| anyhow::anyhow!("{flag} `{text}` is outside 1970 to 2554"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bad_input() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse("0s").is_err());
        assert!(parse("10").is_err());
        assert!(parse("ten m").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }

    #[test]
    fn instants_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            instant_ns("2026-11-18T11:06:40Z", "--since").unwrap(),
            1_795_000_000_000_000_000
        );
        let ago = instant_ns("1h", "--since").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(now - ago >= 3_599_000_000_000 && now - ago <= 3_601_000_000_000);
        let err = instant_ns("yesterday", "--until").unwrap_err().to_string();
        assert!(err.starts_with("--until `yesterday`"), "{err}");
        for outside in ["2999-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
            let err = instant_ns(outside, "--since").unwrap_err().to_string();
            assert!(err.contains("outside 1970 to 2554"), "{err}");
        }
        assert!(instant_ns("2500-01-01T00:00:00Z", "--since").is_ok());
    }
}
