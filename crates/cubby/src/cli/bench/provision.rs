//! Puts the users a scenario needs on the server, through the same API a parent and a toy
//! use: a guardian signs up (the confirmation link read from the server's outbox), makes a
//! family, consents, adds children, and pairs toys.
//!
//! Pairing is throttled per client address (a toy maker's factory would pair from many);
//! the harness spreads its toys over loopback source addresses 127.0.x.y, a few per
//! address, so that the throttle is never what is measured.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, PairingPoll};
use reqwest::Method;
use serde_json::{Value, json};

use super::target::Target;

/// Pairings started from one source address (the server allows 20 a minute per address).
const PAIRINGS_PER_ADDRESS: usize = 15;
/// Toys paired at once.
const PAIRING_CONCURRENCY: usize = 32;
/// Approvals one guardian has in flight at once: the server counts an approval under way
/// as a possible wrong code until it succeeds, and blocks a guardian with more than a few.
const APPROVALS_AT_ONCE: usize = 4;

/// A signed-in guardian with a family that has consented.
pub struct Family {
    pub base_url: String,
    pub email: String,
    pub password: String,
    pub token: String,
    pub family_id: String,
    http: reqwest::Client,
    approvals: tokio::sync::Semaphore,
}

/// A paired toy: its key, id and a fresh access token.
#[derive(Clone)]
pub struct Toy {
    pub device_id: String,
    pub key_secret: [u8; 32],
    pub token: String,
    /// The loopback address it connects from.
    pub source: IpAddr,
}

/// The loopback source address for the `n`th client: 127.0.0.2, 127.0.0.3, … skipping the
/// network and broadcast numbers (.0 and .255), so no two clients share one.
pub fn source_address(n: usize) -> IpAddr {
    let n = n + 1;
    let (host, network) = (n % 254 + 1, n / 254);
    IpAddr::V4(Ipv4Addr::new(127, (network >> 8 & 0xff) as u8, (network & 0xff) as u8, host as u8))
}

pub fn http_from(source: IpAddr) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().local_address(source).pool_max_idle_per_host(4).build()?)
}


impl Family {
    /// Signs a new guardian up (named by `label`, calling from `source`), confirms the
    /// address from the outbox, signs in, creates a family and gives consent.
    pub async fn create(target: &Target, label: &str, password: &str, source: IpAddr) -> anyhow::Result<Self> {
        let http = http_from(source)?;
        let email = format!("{label}@bench.cubby.invalid");
        let mut family = Self {
            base_url: target.base_url.clone(),
            email: email.clone(),
            password: password.to_owned(),
            token: String::new(),
            family_id: String::new(),
            http,
            approvals: tokio::sync::Semaphore::new(APPROVALS_AT_ONCE),
        };
        family.call(Method::POST, "/api/v1/accounts", json!({"email": email, "password": password}), 202).await?;
        let token = mailed_token(&target.outbox, &email, "Confirm your email").await?;
        family.call(Method::POST, "/api/v1/accounts/verify-email", json!({"token": token}), 204).await?;
        family.sign_in().await?;
        let created = family.call(Method::POST, "/api/v1/families", json!({"name": label}), 201).await?;
        family.family_id = created["id"].as_str().context("a family without an id")?.to_owned();
        let notice = family.call(Method::GET, "/api/v1/privacy-notice", Value::Null, 200).await?;
        let consent = json!({"notice_version": notice["version"], "method": "email_plus"});
        let path = format!("/api/v1/families/{}/consent", family.family_id);
        family.call(Method::POST, &path, consent, 202).await?;
        let token = mailed_token(&target.outbox, &email, "Confirm your parental consent").await?;
        family.call(Method::POST, "/api/v1/consent/confirm", json!({"token": token}), 204).await?;
        Ok(family)
    }

    /// Signs in with the password (Argon2id on the server); returns the session token.
    pub async fn sign_in(&mut self) -> anyhow::Result<String> {
        let body = json!({"email": self.email, "password": self.password});
        let session = self.call(Method::POST, "/api/v1/sessions", body, 201).await?;
        self.token = session["token"].as_str().context("a session without a token")?.to_owned();
        Ok(self.token.clone())
    }

    pub async fn add_child(&self, nickname: &str) -> anyhow::Result<String> {
        let path = format!("/api/v1/families/{}/children", self.family_id);
        let child = self.call(Method::POST, &path, json!({"nickname": nickname, "age_band": "6_8"}), 201).await?;
        Ok(child["id"].as_str().context("a child without an id")?.to_owned())
    }

    /// Pairs `count` toys for `child`, numbered from `first` (which picks their source
    /// addresses), and signs each in.
    pub async fn pair_toys(self: &Arc<Self>, child: &str, first: usize, count: usize, progress: &indicatif::ProgressBar) -> anyhow::Result<Vec<Toy>> {
        let mut toys = Vec::with_capacity(count);
        let numbers: Vec<usize> = (first..first + count).collect();
        for chunk in numbers.chunks(PAIRING_CONCURRENCY) {
            let mut tasks = tokio::task::JoinSet::new();
            for &n in chunk {
                let (family, child) = (self.clone(), child.to_owned());
                tasks.spawn(async move { family.pair_toy(&child, n).await });
            }
            while let Some(toy) = tasks.join_next().await {
                toys.push(toy??);
                progress.inc(1);
            }
        }
        toys.sort_by_key(|t| t.source);
        Ok(toys)
    }

    async fn pair_toy(&self, child: &str, n: usize) -> anyhow::Result<Toy> {
        let source = source_address(n / PAIRINGS_PER_ADDRESS);
        let api = CubbyClient::with_http_client(&self.base_url, http_from(source)?);
        let key = DeviceKey::generate()?;
        let start = api.start_pairing(&key, DeviceKind::Toy, "cubby-bench 1.0").await?;
        let approval = json!({"user_code": start.user_code, "family_id": self.family_id, "child_id": child, "name": format!("toy {n}")});
        {
            let _turn = self.approvals.acquire().await?;
            self.call(Method::POST, "/api/v1/pairing/approve", approval, 200).await?;
        }
        let PairingPoll::Paired(paired) = api.poll_pairing(&start.device_code).await? else {
            bail!("toy {n} was not paired after its approval");
        };
        let session = api.authenticate(&key, &paired.device_id).await?;
        Ok(Toy { device_id: paired.device_id, key_secret: key.secret_bytes(), token: session.access_token.clone(), source })
    }

    /// A JSON call as the guardian that must answer `status`.
    pub async fn call(&self, method: Method, path: &str, body: Value, status: u16) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await.with_context(|| format!("calling {path}"))?;
        let got = answer.status().as_u16();
        let value: Value = answer.json().await.unwrap_or(Value::Null);
        if got != status {
            bail!("{path} answered {got} (expected {status}): {value}");
        }
        Ok(value)
    }
}

/// Signs the toys in again: access tokens last 15 minutes, a bench can last longer.
pub async fn refresh_tokens(base_url: &str, toys: &mut [Toy]) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, toy) in toys.iter().enumerate() {
        let (base_url, toy) = (base_url.to_owned(), toy.clone());
        tasks.spawn(async move {
            let api = CubbyClient::with_http_client(&base_url, http_from(toy.source)?);
            let session = api.authenticate(&DeviceKey::from_secret_bytes(toy.key_secret), &toy.device_id).await?;
            Ok::<_, anyhow::Error>((index, session.access_token.clone()))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (index, token) = done??;
        if let Some(toy) = toys.get_mut(index) {
            toy.token = token;
        }
    }
    Ok(())
}

/// The 64-hex-digit token of the newest mail to `to` about `subject`, waiting for it.
async fn mailed_token(outbox: &Path, to: &str, subject: &str) -> anyhow::Result<String> {
    for _ in 0..400 {
        // The server's own reader skips a message still being written.
        let mails = cubby_server::mail::read_outbox(outbox).unwrap_or_default();
        let token = mails
            .iter()
            .rev()
            .filter(|mail| mail.to == to && mail.subject.contains(subject))
            .find_map(|mail| mail.body.split(|c: char| !c.is_ascii_hexdigit()).find(|w| w.len() == 64));
        if let Some(token) = token {
            return Ok(token.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("no mail to {to} about {subject:?} in {} (is it the server's --outbox-dir?)", outbox.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_has_an_address_of_its_own() {
        let addresses: std::collections::HashSet<IpAddr> = (0..100_000).map(source_address).collect();
        assert_eq!(addresses.len(), 100_000);
        assert_eq!(source_address(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(addresses.iter().all(|a| matches!(a, IpAddr::V4(v4) if v4.octets()[3] != 0 && v4.octets()[3] != 255)));
    }
}
