//! Endpoint weights: how much of its service's traffic an endpoint is meant to carry,
//! relative to the others. Each proxy declares its own (`[control_plane] weight`, or per
//! endpoint in a file-configured upstream); the control plane keeps it in the registry and
//! hands it to every caller with the endpoint.

/// An endpoint that says nothing weighs this much.
pub const DEFAULT: u32 = 100;

/// The heaviest an endpoint may be: 100 times the default, so that no endpoint can claim
/// more than a bounded share beside default-weight peers.
pub const MAX: u32 = 10_000;

/// `weight` if it is one an endpoint may have.
pub fn check(weight: u32) -> Result<u32, String> {
    if (1..=MAX).contains(&weight) {
        Ok(weight)
    } else {
        Err(format!("weight {weight} is not between 1 and {MAX}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_bounded_on_both_sides() {
        assert_eq!(check(1), Ok(1));
        assert_eq!(check(DEFAULT), Ok(DEFAULT));
        assert_eq!(check(MAX), Ok(MAX));
        assert!(check(0).is_err());
        assert_eq!(
            check(MAX + 1),
            Err("weight 10001 is not between 1 and 10000".to_owned())
        );
    }
}
