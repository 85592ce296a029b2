//! A minimal HTTP/1.0 client over a raw socket (no chunking: a body runs to the end of the
//! connection), and webhook signatures as a forge computes them.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A response: status, headers (lower-case names) and body.
pub(crate) struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Split `http://HOST:PORT/PATH` into `HOST:PORT` and `/PATH`.
pub(crate) fn host_and_path(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").unwrap();
    rest.split_at(rest.find('/').unwrap())
}

/// One HTTP/1.0 request.
pub(crate) fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    let (host, path) = host_and_path(url);
    let mut stream = TcpStream::connect(host).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Response {
        status,
        head: head.to_lowercase(),
        body: body.to_string(),
    }
}

/// GET with a bearer token.
pub(crate) fn get(url: &str, token: &str) -> Response {
    request("GET", url, Some(token), &[], b"")
}

/// POST a JSON body, with a bearer token if given.
pub(crate) fn post_json(url: &str, token: Option<&str>, body: &Value) -> Response {
    let headers = [("Content-Type", "application/json".to_string())];
    request("POST", url, token, &headers, body.to_string().as_bytes())
}

/// The `X-Hub-Signature-256` value a forge sends: `sha256=` and the hex HMAC-SHA256 of `body`.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
