//! SASL authentication for the Kafka client: PLAIN and SCRAM-SHA-256/512.
//!
//! SCRAM follows RFC 5802 (with RFC 7677 for SHA-256): client-first `n,,n=<user>,r=<nonce>`,
//! server-first `r=<nonce>,s=<salt>,i=<iterations>`, then the client proof
//! `ClientKey XOR HMAC(H(ClientKey), AuthMessage)` with
//! `ClientKey = HMAC(PBKDF2(password, salt, i), "Client Key")`, and finally the server's
//! signature is checked, so a server that does not know the password is rejected too.
//! The messages are carried by Kafka's SaslHandshake v1 + SaslAuthenticate (KIP-152).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A SASL mechanism Tidal can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// The name Kafka uses (`sasl.mechanism`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses a Kafka mechanism name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

/// SASL credentials. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A SCRAM exchange that went wrong (the server's message, or its signature, is bad).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("server-first message is malformed: {0}")]
    ServerFirst(String),
    #[error("server nonce does not extend the client nonce")]
    Nonce,
    #[error("server-final message: {0}")]
    ServerFinal(String),
    #[error("server signature does not match: the server does not know this user's password")]
    ServerSignature,
}

/// The PLAIN mechanism's single message: `\0user\0password`.
pub fn plain_message(c: &Credentials) -> Vec<u8> {
    let mut m = Vec::with_capacity(c.username.len() + c.password.len() + 2);
    m.push(0);
    m.extend_from_slice(c.username.as_bytes());
    m.push(0);
    m.extend_from_slice(c.password.as_bytes());
    m
}

/// A fresh client nonce: 24 random bytes, base64.
pub fn new_nonce() -> String {
    let mut b = [0u8; 24];
    // getrandom only fails on platforms without an entropy source; a time-derived nonce is
    // then still unique per connection, which is what SCRAM needs from it.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    B64.encode(b)
}

/// The client side of one SCRAM exchange.
pub struct Scram {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    /// Starts an exchange for `c` with the client nonce `nonce`.
    pub fn new(c: &Credentials, nonce: &str) -> Self {
        let user = c.username.replace('=', "=3D").replace(',', "=2C");
        Self {
            mechanism: c.mechanism,
            password: c.password.clone(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// The client-first message (no channel binding).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers the server-first message with the client-final message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let sf = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::ServerFirst("not UTF-8".into()))?;
        let (mut nonce, mut salt, mut iters) = (None, None, None);
        for part in sf.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iters = Some(v),
                Some(("m", _)) => {
                    return Err(ScramError::ServerFirst("mandatory extension".into()));
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| ScramError::ServerFirst("no r=".into()))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = B64
            .decode(salt.ok_or_else(|| ScramError::ServerFirst("no s=".into()))?)
            .map_err(|_| ScramError::ServerFirst("salt is not base64".into()))?;
        let iters: u32 = iters
            .ok_or_else(|| ScramError::ServerFirst("no i=".into()))?
            .parse()
            .ok()
            .filter(|i| (1..=10_000_000).contains(i))
            .ok_or_else(|| ScramError::ServerFirst("bad iteration count".into()))?;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
        let (proof, server_sig) = match self.mechanism {
            Mechanism::ScramSha512 => proofs::<Sha512>(&self.password, &salt, iters, &auth_message),
            _ => proofs::<Sha256>(&self.password, &salt, iters, &auth_message),
        };
        self.server_signature = Some(server_sig);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (`v=<signature>` or `e=<error>`).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let s = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::ServerFinal("not UTF-8".into()))?;
        if let Some(e) = s.strip_prefix("e=") {
            return Err(ScramError::ServerFinal(e.to_string()));
        }
        let v = s
            .strip_prefix("v=")
            .ok_or_else(|| ScramError::ServerFinal("no v=".into()))?;
        let got = B64
            .decode(v)
            .map_err(|_| ScramError::ServerFinal("signature is not base64".into()))?;
        match &self.server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err(ScramError::ServerSignature),
        }
    }
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<D> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// (ClientProof, ServerSignature) for one exchange.
fn proofs<D: EagerHash + Digest>(
    password: &str,
    salt: &[u8],
    iters: u32,
    auth: &str,
) -> (Vec<u8>, Vec<u8>) {
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2_hmac::<D>(password.as_bytes(), salt, iters, &mut salted);
    let client_key = hmac::<D>(&salted, b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    let client_sig = hmac::<D>(&stored_key, auth.as_bytes());
    let proof = client_key
        .iter()
        .zip(&client_sig)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac::<D>(&salted, b"Server Key");
    (proof, hmac::<D>(&server_key, auth.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(m: Mechanism, user: &str, pass: &str) -> Credentials {
        Credentials {
            mechanism: m,
            username: user.into(),
            password: pass.into(),
        }
    }

    /// RFC 7677 section 3, the SCRAM-SHA-256 example exchange.
    #[test]
    fn rfc7677_sha256_vector() {
        let mut s = Scram::new(
            &creds(Mechanism::ScramSha256, "user", "pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first).expect("valid server-first");
        assert_eq!(
            String::from_utf8(fin).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        assert_eq!(
            s.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn hostile_server_messages_are_rejected() {
        let c = creds(Mechanism::ScramSha512, "u", "p");
        let mut s = Scram::new(&c, "abc");
        assert_eq!(
            s.client_final(b"r=xyz123,s=AAAA,i=4096"),
            Err(ScramError::Nonce)
        );
        assert_eq!(
            s.client_final(b"r=abc,s=AAAA,i=4096"),
            Err(ScramError::Nonce),
            "nonce must be extended"
        );
        assert!(matches!(
            s.client_final(b"r=abcdef,s=!!,i=4096"),
            Err(ScramError::ServerFirst(_))
        ));
        assert!(matches!(
            s.client_final(b"r=abcdef,s=AAAA,i=0"),
            Err(ScramError::ServerFirst(_))
        ));
        assert!(matches!(
            s.client_final(b"r=abcdef,s=AAAA"),
            Err(ScramError::ServerFirst(_))
        ));
        assert_eq!(
            s.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::ServerFinal("invalid-proof".into()))
        );
    }

    #[test]
    fn usernames_are_escaped_and_passwords_never_printed() {
        let c = creds(Mechanism::ScramSha256, "a=b,c", "hunter2");
        assert_eq!(Scram::new(&c, "n").client_first(), b"n,,n=a=3Db=2Cc,r=n");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(plain_message(&creds(Mechanism::Plain, "u", "p")), b"\0u\0p");
        assert_eq!(
            Mechanism::parse("scram-sha-512"),
            Some(Mechanism::ScramSha512)
        );
        assert_ne!(new_nonce(), new_nonce());
    }
}
