//! Webhook deliveries: signature, timestamp and delivery headers, payload paths.
#![no_main]

#[derive(arbitrary::Arbitrary, Debug)]
struct Delivery {
    secret: Vec<u8>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now: i64,
    signed: bool,
}

libfuzzer_sys::fuzz_target!(|d: Delivery| {
    orch::fuzz::webhook(&d.secret, &d.headers, &d.body, d.now, d.signed)
});
