//! Console sessions and one-time sign-in codes, held by the replica that made them.
//!
//! A session is a random 256-bit value in an `HttpOnly`, `Secure`, `SameSite=Strict`
//! cookie; the server keeps only its SHA-256, so a memory dump or a log line holding the
//! table's keys cannot be replayed as a cookie. Each session carries its own CSRF token.
//! Sessions end after [`IDLE`] without a request, [`LIFETIME`] after sign-in, or at
//! sign-out (removed here: the cookie is worthless from then on).
//!
//! A sign-in code is what `meshctl console` (and `meshctl demo`) hand an operator who holds
//! a token or certificate, so a browser without either can sign in as them: one use,
//! [`CODE_LIFETIME`], and carried in the URL's fragment, which browsers never send.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use signet_spiffe::SpiffeId;

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after sign-in, used or not.
pub const LIFETIME: Duration = Duration::from_secs(60 * 60);
/// A sign-in code is good this long, once.
pub const CODE_LIFETIME: Duration = Duration::from_secs(120);
/// Most sessions a replica holds; sign-in past it is refused (503) rather than ending
/// someone else's session.
const MAX_SESSIONS: usize = 4096;
/// Most sessions one operator holds; a new sign-in ends that operator's oldest.
const MAX_PER_OPERATOR: usize = 16;
/// Most unused sign-in codes at once.
const MAX_CODES: usize = 256;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: SpiffeId,
    /// The value every form of this session must send back.
    pub csrf: String,
    /// How the operator proved who they are: `token`, `certificate` or `code`.
    pub method: &'static str,
    created: Instant,
    last_used: Instant,
}

#[derive(Debug)]
struct Code {
    operator: SpiffeId,
    expires: Instant,
}

/// Why no session or code was made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the console has too many sessions or sign-in codes open; try again later")]
    Full,
    #[error("no secure random source")]
    NoRandom,
}

/// Every console session and unused sign-in code of this replica.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    codes: Mutex<HashMap<[u8; 32], Code>>,
}

/// 256 random bits, URL-safe base64.
pub fn random_token() -> Result<String, Refused> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Refused::NoRandom)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key(secret: &str) -> [u8; 32] {
    crate::server::rest::sha256(secret.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// A new session for `operator`: the cookie's value and the session.
    pub fn open(
        &self,
        operator: SpiffeId,
        method: &'static str,
    ) -> Result<(String, Session), Refused> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| alive(s, now));
        let mine: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.operator == operator)
            .map(|(k, s)| (*k, s.created))
            .collect();
        if mine.len() >= MAX_PER_OPERATOR
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, created)| *created)
        {
            sessions.remove(oldest);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(Refused::Full);
        }
        let cookie = random_token()?;
        let session = Session {
            operator,
            csrf: random_token()?,
            method,
            created: now,
            last_used: now,
        };
        sessions.insert(key(&cookie), session.clone());
        Ok((cookie, session))
    }

    /// The live session `cookie` names, marked used now.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let k = key(cookie);
        let session = sessions.get_mut(&k)?;
        if !alive(session, now) {
            sessions.remove(&k);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Ends the session `cookie` names.
    pub fn close(&self, cookie: &str) {
        lock(&self.sessions).remove(&key(cookie));
    }

    /// Sessions open now.
    pub fn open_count(&self) -> usize {
        let now = Instant::now();
        lock(&self.sessions)
            .values()
            .filter(|s| alive(s, now))
            .count()
    }

    /// A one-time sign-in code for `operator`.
    pub fn code_for(&self, operator: SpiffeId) -> Result<String, Refused> {
        let now = Instant::now();
        let mut codes = lock(&self.codes);
        codes.retain(|_, c| c.expires > now);
        if codes.len() >= MAX_CODES {
            return Err(Refused::Full);
        }
        let code = random_token()?;
        codes.insert(
            key(&code),
            Code {
                operator,
                expires: now + CODE_LIFETIME,
            },
        );
        Ok(code)
    }

    /// The operator `code` signs in, once: a used, unknown or expired code is `None`.
    pub fn redeem(&self, code: &str) -> Option<SpiffeId> {
        let found = lock(&self.codes).remove(&key(code))?;
        (found.expires > Instant::now()).then_some(found.operator)
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE && now.duration_since(s.created) < LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> SpiffeId {
        format!("spiffe://t.test/signet/operator/{name}")
            .parse()
            .unwrap()
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only_until_it_is_closed() {
        let sessions = Sessions::default();
        let (cookie, opened) = sessions.open(id("alice"), "token").unwrap();
        assert_eq!(sessions.get(&cookie).unwrap().operator, id("alice"));
        assert_eq!(sessions.get(&cookie).unwrap().csrf, opened.csrf);
        assert!(sessions.get(&random_token().unwrap()).is_none());
        sessions.close(&cookie);
        assert!(sessions.get(&cookie).is_none());
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let sessions = Sessions::default();
        let (_, a) = sessions.open(id("alice"), "token").unwrap();
        let (_, b) = sessions.open(id("alice"), "token").unwrap();
        assert_ne!(a.csrf, b.csrf);
    }

    #[test]
    fn a_code_signs_in_once() {
        let sessions = Sessions::default();
        let code = sessions.code_for(id("alice")).unwrap();
        assert!(sessions.redeem("not-a-code").is_none());
        assert_eq!(sessions.redeem(&code), Some(id("alice")));
        assert_eq!(sessions.redeem(&code), None);
    }

    #[test]
    fn one_operator_holds_at_most_so_many_sessions_and_loses_the_oldest() {
        let sessions = Sessions::default();
        let (first, _) = sessions.open(id("alice"), "token").unwrap();
        let (bob, _) = sessions.open(id("bob"), "token").unwrap();
        for _ in 0..MAX_PER_OPERATOR {
            sessions.open(id("alice"), "token").unwrap();
        }
        assert!(sessions.get(&first).is_none());
        assert!(sessions.get(&bob).is_some());
        assert_eq!(sessions.open_count(), MAX_PER_OPERATOR + 1);
    }

    #[test]
    fn sign_in_codes_are_bounded() {
        let sessions = Sessions::default();
        for _ in 0..MAX_CODES {
            sessions.code_for(id("alice")).unwrap();
        }
        assert!(sessions.code_for(id("alice")).is_err());
    }
}
