#![allow(clippy::unwrap_used)]
//! Crash safety: a child process appends under load and is killed with SIGKILL at a random
//! moment; after reopening, every entry acknowledged before the kill is present and every
//! chain verifies. Repeated many times on one growing store.
//!
//! The child is this same test binary, re-run with `PLED_CRASH_CHILD_DIR` set and asked to run
//! only `child_writer`, which does nothing in a normal test run.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::entries;
use pled_core::{EntryHash, ExecutionId, Seq};
use pled_store::verify::verify_store;
use pled_store::{Append, Store, StoreError, StoreOptions};

const CHILD_ENV: &str = "PLED_CRASH_CHILD_DIR";
const ROUNDS: usize = 30;

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        // A fixed set of executions, so chains grow across rounds; several writers share each.
        let ids: Vec<_> = (0..6u128).map(|i| ExecutionId::from_u128(0x5eed_0000 + i)).collect();
        let mut tasks = Vec::new();
        for w in 0..12usize {
            let store = store.clone();
            let id = ids[w % ids.len()];
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                loop {
                    n += 1;
                    let mut head = store.chain_head(id).unwrap();
                    let run = entries(&mut head, 1 + (n + w) % 7);
                    match store.append(Append::new(run).unwrap()).await {
                        Ok(a) => println!("ack {} {} {}", a.execution_id, a.last_seq, a.last_hash),
                        Err(StoreError::SeqConflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        // Write until killed.
        let _writers = tasks;
        std::future::pending::<()>().await;
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test seed {seed}");
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut p = l.strip_prefix("ack ")?.split(' ');
                    let id: ExecutionId = p.next()?.parse().ok()?;
                    let seq = Seq::new(p.next()?.parse().ok()?);
                    let hash: EntryHash = p.next()?.parse().ok()?;
                    Some((id, seq, hash))
                })
                .collect::<Vec<_>>()
        });
        // xorshift: a kill moment between 20 and 400 ms after start (the store opens in a
        // few ms, so most kills land mid-append).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 380));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        total_acks += acks.len();

        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for (id, seq, hash) in &acks {
            let e = store.entry(*id, *seq).unwrap();
            assert_eq!(e.map(|e| e.hash()), Some(*hash), "round {round}: acknowledged entry {id}/{seq} lost");
        }
        verify_store(&store, |_| {}).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(total_acks > ROUNDS, "the child barely wrote ({total_acks} acks): the test proves nothing");
}
