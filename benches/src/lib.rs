//! Shared fixtures for PLED's benchmarks: seeded entry bodies and chains, so every bench
//! measures the same data from run to run.

use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, SealedEntry};

/// Every bench and the load generator allocate with mimalloc, as `pled` does: the library
/// code they measure runs on it in the service (and the load generator, sharing the machine
/// with the server, keeps its own allocation cost low).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A representative entry body (~200 bytes of canonical JSON, like an `event.received`).
pub fn body(n: u64) -> Body {
    let v = serde_json::json!({
        "eventSeq": n,
        "type": "order.line.added",
        "source": "erp-connector",
        "payload": { "sku": format!("SKU-{:06}", n % 100_000), "qty": n % 17, "amount": "1999.95", "note": "benchmark entry" },
    });
    #[allow(clippy::unwrap_used)] // INVARIANT: the literal above is a valid body.
    Body::from_value(&v).unwrap()
}

/// The next `n` sealed entries of a chain, advancing its head.
pub fn seal_run(head: &mut ChainHead, n: usize, at: &RecordedAt) -> Vec<SealedEntry> {
    #[allow(clippy::unwrap_used)] // INVARIANT: a valid kind literal.
    let kind = Kind::new("event.received").unwrap();
    (0..n)
        .map(|_| {
            let e = head.next_entry(kind.clone(), at.clone(), body(head.seq.get() + 1));
            head.advance(&e);
            e
        })
        .collect()
}

/// A deterministic execution id for fixture `i`.
pub fn execution(i: u64) -> ExecutionId {
    ExecutionId::from_u128(0x0bec_0000_0000_0000_0000_0000_0000_0000 | u128::from(i))
}
