use super::*;
use crate::authority::FixedClock;

fn id() -> SpiffeId {
    "spiffe://acme.internal/ns/shop/sa/cart".parse().unwrap()
}

fn at(secs: u64) -> Arc<dyn Clock> {
    Arc::new(FixedClock(
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    ))
}

#[tokio::test]
async fn a_token_redeems_once_for_its_identity() {
    let tokens = JoinTokens::new(MemoryTokenStore::default());
    let new = tokens.create(id(), Duration::from_secs(600)).await.unwrap();
    assert_eq!(new.token.len(), 16 + 1 + 64);
    assert!(
        !format!("{new:?}").contains(&new.token),
        "Debug hides the token"
    );

    assert_eq!(tokens.redeem(&new.token).await.unwrap(), id());
    assert_eq!(
        tokens.redeem(&new.token).await,
        Err(TokenError::AlreadyUsed)
    );
}

#[tokio::test]
async fn peeking_spends_nothing_and_sees_what_redeeming_would() {
    let tokens = JoinTokens::new(MemoryTokenStore::default());
    let new = tokens.create(id(), Duration::from_secs(600)).await.unwrap();
    assert_eq!(tokens.peek(&new.token).await.unwrap(), id());
    assert_eq!(tokens.peek(&new.token).await.unwrap(), id());
    assert_eq!(tokens.redeem(&new.token).await.unwrap(), id());
    assert_eq!(tokens.peek(&new.token).await, Err(TokenError::AlreadyUsed));
    assert_eq!(tokens.peek("nope").await, Err(TokenError::Malformed));
}

#[tokio::test]
async fn only_a_hash_of_the_secret_is_stored() {
    let tokens = JoinTokens::new(MemoryTokenStore::default());
    let new = tokens.create(id(), Duration::from_secs(600)).await.unwrap();
    let (tid, secret) = new.token.split_once('.').unwrap();
    let stored = tokens.store().get(tid).await.unwrap().unwrap();
    assert_eq!(stored.secret_sha256, sha256(secret.as_bytes()));
    assert!(!format!("{stored:?}").contains(secret));
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let store = Arc::new(MemoryTokenStore::default());
    let maker = JoinTokens::with_clock(SharedStore(store.clone()), at(1_000));
    let new = maker.create(id(), Duration::from_secs(60)).await.unwrap();

    let just_before = JoinTokens::with_clock(SharedStore(store.clone()), at(1_059));
    let later = JoinTokens::with_clock(SharedStore(store.clone()), at(1_060));
    assert_eq!(later.redeem(&new.token).await, Err(TokenError::Expired));
    // An expired attempt does not consume the token.
    assert_eq!(just_before.redeem(&new.token).await, Ok(id()));
}

#[tokio::test]
async fn wrong_unknown_and_malformed_tokens_are_refused_alike() {
    let tokens = JoinTokens::new(MemoryTokenStore::default());
    let new = tokens.create(id(), Duration::from_secs(600)).await.unwrap();
    let (tid, secret) = new.token.split_once('.').unwrap();

    let mut wrong = secret.to_owned().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = format!("{tid}.{}", String::from_utf8(wrong).unwrap());
    assert_eq!(tokens.redeem(&wrong).await, Err(TokenError::Invalid));

    let unknown = format!("{}.{secret}", "0".repeat(16));
    assert_eq!(tokens.redeem(&unknown).await, Err(TokenError::Invalid));

    for bad in [
        "",
        "abc",
        "x.y",
        &format!("{tid}{secret}"),
        &format!("{tid}.{secret}0"),
    ] {
        assert_eq!(
            tokens.redeem(bad).await,
            Err(TokenError::Malformed),
            "{bad:?}"
        );
    }
    // The real token still works after all that.
    assert_eq!(tokens.redeem(&new.token).await, Ok(id()));
}

#[tokio::test]
async fn racing_redemptions_let_exactly_one_win() {
    let tokens = Arc::new(JoinTokens::new(MemoryTokenStore::default()));
    let new = tokens.create(id(), Duration::from_secs(600)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (t, tok) = (tokens.clone(), new.token.clone());
        tasks.push(tokio::spawn(async move { t.redeem(&tok).await }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e, TokenError::AlreadyUsed),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn zero_ttl_is_refused() {
    let tokens = JoinTokens::new(MemoryTokenStore::default());
    assert!(matches!(
        tokens.create(id(), Duration::ZERO).await,
        Err(TokenError::ZeroTtl)
    ));
}

/// Lets several `JoinTokens` with different clocks share one store.
#[derive(Debug)]
struct SharedStore(Arc<MemoryTokenStore>);

impl TokenStore for SharedStore {
    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        self.0.insert(record)
    }
    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>> {
        self.0.get(id)
    }
    fn mark_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        self.0.mark_used(id, at)
    }
}
