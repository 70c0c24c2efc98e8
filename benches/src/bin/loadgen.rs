//! HTTP load generator for PLED: starts a real `pled serve` (release build) on a fresh store,
//! sets up a template and executions, then drives it with N keep-alive connections and reports
//! throughput and latency percentiles (HdrHistogram, microsecond resolution).
//!
//! ```text
//! cargo build --release -p pled-api -p pled-benches
//! target/release/loadgen --pled target/release/pled --mode events --connections 64 --seconds 20
//! target/release/loadgen --pled target/release/pled --mode reads  --connections 64 --rate 20000
//! ```
//!
//! `events`: every request posts one event (full pipeline: auth, lane, engine, synced group
//! commit) to one of `--executions` executions. `reads`: alternating `GET …/state` and
//! `GET …/ledger?limit=50` on executions that already hold events. `templates`: alternating
//! `GET /v1/templates/{id}` and `GET /v1/templates?limit=50`. With `--rate`, requests are sent
//! open-loop at that rate (latency includes queueing when the server falls behind); without it,
//! each connection sends as fast as answers come back. `anchor`: posts `--rate` events per
//! second (default 10) and measures, per event, the time from its acknowledged append to its
//! proof being `confirmed` on the chain (the server's dev anvil: 1 s blocks, 1 confirmation,
//! unless `--serve-arg`s say otherwise).
//!
//! `--serve-arg` passes flags to `pled serve` (repeatable), e.g. `--serve-arg=--chain
//! --serve-arg=off` to measure HTTP without anchoring.
//!
//! `--idempotency-keys` sends every event with an `Idempotency-Key` of its own.
//!
//! `--neighbour-rate N` adds a second org, `quiet`, that posts N events/s to an execution of
//! its own (open loop, one connection) while the load runs, and reports its latency on a line
//! of its own: how much the load's org crowds another tenant out, with or without
//! `--serve-arg=--org-rate-limit --serve-arg=R`. Answers 429 are counted as `limited`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// The `pled` binary to start.
    #[arg(long)]
    pled: String,
    /// events | reads | templates
    #[arg(long, default_value = "events")]
    mode: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Executions to spread events over.
    #[arg(long, default_value_t = 256)]
    executions: usize,
    /// Measurement time.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Warm-up time (not measured).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Open-loop request rate (requests/s in total); 0 = closed loop.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Extra flags for `pled serve` (repeat for each word).
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// The server's log filter (`RUST_LOG`); its log goes to our stderr.
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Also print, per 100 ms window of due times, the requests and the slowest one, for
    /// the windows whose slowest request took longer than this many milliseconds (0: off).
    #[arg(long, default_value_t = 0)]
    timeline_ms: u64,
    /// Give the server this data directory (new or empty) and leave it there afterwards,
    /// to read RocksDB's `LOG` (flushes, compactions, write stalls); default: a temporary
    /// directory that is removed.
    #[arg(long)]
    keep_data: Option<std::path::PathBuf>,
    /// A second org posts this many events/s (open loop) beside the load; 0: none.
    #[arg(long, default_value_t = 0)]
    neighbour_rate: u64,
    /// `events`: send each event with an `Idempotency-Key` of its own, as integrators are told
    /// to (the server then looks it up and stores the answer with the event).
    #[arg(long)]
    idempotency_keys: bool,
}

struct Target {
    /// The server's process id (for its CPU time).
    pid: u32,
    base: String,
    /// `127.0.0.1:port`.
    addr: String,
    token: String,
    /// `Bearer <token>`.
    authorization: String,
    /// For set-up and `anchor` mode.
    client: reqwest::Client,
}

impl Target {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.post_as(&self.token, path, body).await
    }

    async fn post_as(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self.client.post(format!("{}{path}", self.base)).bearer_auth(token).json(body).send().await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
        Ok(r.json().await?)
    }
}

/// An admin token of `org`, created in the (not yet served) store `dir`.
fn create_token(pled: &str, dir: &std::path::Path, org: &str) -> anyhow::Result<String> {
    let out = Command::new(pled)
        .args(["token", "create", "--org", org, "--role", "admin", "--data-dir"])
        .arg(dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp;
    let dir = match &args.keep_data {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            anyhow::ensure!(std::fs::read_dir(d)?.next().is_none(), "--keep-data {} is not empty", d.display());
            d.as_path()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };
    let token = create_token(&args.pled, dir, "bench")?;
    let quiet_token = if args.neighbour_rate > 0 { Some(create_token(&args.pled, dir, "quiet")?) } else { None };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(&args.pled)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args(&args.serve_args)
        .env("RUST_LOG", &args.server_log)
        // The server logs to stdout: into our stderr, keeping our stdout for the results.
        .stdout(Stdio::from(std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned()?))
        .spawn()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let addr = format!("127.0.0.1:{port}");
    let authorization = format!("Bearer {token}");
    let t = Arc::new(Target { pid: server.id(), base: format!("http://{addr}"), addr, token, authorization, client });
    // Up to a minute: a server started under a profiler (`--pled` a wrapper script) is slow.
    let mut healthy = false;
    for _ in 0..1200 {
        if t.client.get(format!("{}/health", t.base)).send().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = if healthy {
        run(&args, t.clone(), quiet_token).await
    } else {
        Err(anyhow::anyhow!("the server never answered /health"))
    };
    server.kill()?;
    server.wait()?;
    result
}

async fn run(args: &Args, t: Arc<Target>, quiet_token: Option<String>) -> anyhow::Result<()> {
    let template = json!({
        "name": "bench",
        "variables": [{ "name": "n", "type": "int", "default": 0 }],
        "states": [{ "id": "open", "initial": true }, { "id": "closed", "final": true }],
        "transitions": [
            { "id": "count", "from": "open", "to": "open", "on": "order.line", "guard": "msg.data.qty > 0", "assign": { "n": "vars.n + msg.data.qty" } },
            { "id": "close", "from": "open", "to": "closed", "on": "order.closed" }
        ],
        "rules": [{ "id": "line", "on": "order.line.added", "emit": { "type": "order.line", "data": { "qty": "event.payload.qty", "sku": "event.payload.sku" } } }]
    });
    let tid = t.post("/v1/templates", &template).await?["id"].as_str().unwrap_or_default().to_owned();
    t.post(&format!("/v1/templates/{tid}/versions"), &json!({})).await?;
    let mut executions = Vec::new();
    for i in 0..args.executions {
        let e = t.post("/v1/executions", &json!({ "templateId": tid, "name": format!("bench {i}") })).await?;
        executions.push(e["id"].as_str().unwrap_or_default().to_owned());
    }
    if args.mode == "reads" {
        // Give every execution a ledger worth paging.
        for e in &executions {
            let events: Vec<Value> = (0..50).map(|i| json!({ "type": "order.line.added", "payload": { "qty": 1, "sku": format!("S{i}") }, "source": "bench" })).collect();
            t.post(&format!("/v1/executions/{e}/events/batch"), &json!({ "events": events })).await?;
        }
    }
    if args.mode == "anchor" {
        return anchor_latency(args, &t, &executions).await;
    }
    let neighbour = match &quiet_token {
        Some(token) => {
            let tid = t.post_as(token, "/v1/templates", &template).await?["id"].as_str().unwrap_or_default().to_owned();
            t.post_as(token, &format!("/v1/templates/{tid}/versions"), &json!({})).await?;
            let e = t.post_as(token, "/v1/executions", &json!({ "templateId": tid, "name": "quiet" })).await?;
            Some((format!("Bearer {token}"), e["id"].as_str().unwrap_or_default().to_owned()))
        }
        None => None,
    };
    let executions = Arc::new(executions);
    let tid = Arc::new(tid);
    eprintln!(
        "setup done: {} executions; warming up {} s, measuring {} s with {} connections ({})",
        executions.len(),
        args.warmup,
        args.seconds,
        args.connections,
        if args.rate > 0 { format!("open loop at {} req/s", args.rate) } else { "closed loop".into() }
    );

    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    // Per 100 ms window of due times: requests and the slowest latency (µs).
    let windows = (args.seconds * 10) as usize;
    let timeline: Arc<Vec<(AtomicU64, AtomicU64)>> =
        Arc::new((0..windows).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect());
    let errors = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let measure_from = started + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.seconds);
    // Open loop: one pacer releases requests as they fall due (request i is due at
    // started + i/rate), every millisecond; any free connection takes the next one. A request
    // that waits for a free connection counts that wait in its latency.
    let pacer = (args.rate > 0).then(|| Arc::new(Pacer::new(started, args.rate)));
    if let Some(p) = pacer.clone() {
        tokio::spawn(async move { p.run(end).await });
    }
    // The server's CPU time over the measured window: client and server share this machine,
    // so CPU per request says more about the server than throughput alone.
    let pid = t.pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = cpu_seconds(pid);
        tokio::time::sleep_until(end.into()).await;
        Some(cpu_seconds(pid)? - before?)
    });
    let client_cpu_before = cpu_seconds(std::process::id());
    let neighbour = neighbour.map(|(authorization, execution)| {
        let (t, rate) = (t.clone(), args.neighbour_rate);
        tokio::spawn(
            async move { neighbour_load(&t, &authorization, &execution, rate, started, measure_from, end).await },
        )
    });
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let keys = args.idempotency_keys.then(|| format!("loadgen-{c}-"));
        let (t, executions, tid, hist, errors, limited, mode, pacer, timeline) = (
            t.clone(),
            executions.clone(),
            tid.clone(),
            hist.clone(),
            errors.clone(),
            limited.clone(),
            args.mode.clone(),
            pacer.clone(),
            timeline.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
            let mut n: u64 = c as u64;
            let mut conn: Option<Connection> = None;
            loop {
                // Open loop: latency counts from when the request was due, not when sent.
                let due = match &pacer {
                    Some(p) => p.next().await,
                    None => Instant::now(),
                };
                if due >= end {
                    break;
                }
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let e = &executions[(n >> 33) as usize % executions.len()];
                let (path, body) = match mode.as_str() {
                    "events" => {
                        let body = json!({ "type": "order.line.added", "payload": { "qty": 1 + (n >> 40) % 5, "sku": format!("SKU-{}", n >> 48) }, "source": "loadgen" });
                        (format!("/v1/executions/{e}/events"), Some(body))
                    }
                    "reads" if n & 1 == 0 => (format!("/v1/executions/{e}/state"), None),
                    "reads" => (format!("/v1/executions/{e}/ledger?limit=50"), None),
                    _ if n & 1 == 0 => (format!("/v1/templates/{tid}"), None),
                    _ => ("/v1/templates?limit=50".to_owned(), None),
                };
                // Unique per request: the connection's prefix and the request's counter.
                let key = keys.as_ref().map(|prefix| format!("{prefix}{n:016x}"));
                let status = match &mut conn {
                    Some(c) => c.send(&t.addr, &t.authorization, &path, body.as_ref(), key.as_deref()).await,
                    None => match Connection::open(&t.addr).await {
                        Ok(mut c) => {
                            let status =
                                c.send(&t.addr, &t.authorization, &path, body.as_ref(), key.as_deref()).await;
                            conn = Some(c);
                            status
                        }
                        Err(_) => None,
                    },
                };
                if status.is_none() {
                    // A failed exchange may leave the connection unusable: open a new one.
                    conn = None;
                }
                let ok = status.is_some_and(|s| s.is_success());
                let done = Instant::now();
                if due >= measure_from {
                    if status == Some(http::StatusCode::TOO_MANY_REQUESTS) {
                        limited.fetch_add(1, Ordering::Relaxed);
                    } else if ok {
                        let micros = done.duration_since(due).as_micros().max(1) as u64;
                        let _ = local.record(micros);
                        let w = (due.duration_since(measure_from).as_millis() / 100) as usize;
                        if let Some((n, max)) = timeline.get(w) {
                            n.fetch_add(1, Ordering::Relaxed);
                            max.fetch_max(micros, Ordering::Relaxed);
                        }
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = hist.lock().await.add(&local);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let server_cpu = cpu.await?;
    let neighbour = match neighbour {
        Some(task) => Some(task.await??),
        None => None,
    };
    if args.timeline_ms > 0 {
        let since_start = measure_from.duration_since(started).as_secs_f64();
        for (i, (n, max)) in timeline.iter().enumerate() {
            let max_ms = max.load(Ordering::Relaxed) as f64 / 1000.0;
            if max_ms > args.timeline_ms as f64 {
                let at = since_start + i as f64 / 10.0;
                let unix = started_unix + at;
                println!(
                    "window {at:6.1} s (unix {unix:.1}): {:5} requests, slowest {max_ms:7.1} ms",
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
    let client_cpu = cpu_seconds(std::process::id()).zip(client_cpu_before).map(|(after, before)| after - before);
    let h = hist.lock().await;
    let secs = args.seconds as f64;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "mode={} connections={} executions={} rate={} -> {:.0} req/s ok, errors={}, limited={}, latency ms: p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
        args.mode,
        args.connections,
        args.executions,
        if args.rate > 0 { args.rate.to_string() } else { "max".into() },
        h.len() as f64 / secs,
        errors.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        q(0.50),
        q(0.95),
        q(0.99),
        h.max() as f64 / 1000.0
    );
    if let Some((n, h, failed)) = neighbour {
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "neighbour org quiet at {n} events/s -> {} ok, {failed} not ok, latency ms: p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
            h.len(),
            q(0.50),
            q(0.95),
            q(0.99),
            h.max() as f64 / 1000.0
        );
    }
    if let Some(cpu) = server_cpu.filter(|_| !h.is_empty()) {
        println!("server CPU: {:.2} cores busy, {:.0} µs per request", cpu / secs, cpu * 1e6 / h.len() as f64);
    }
    if let Some(cpu) = client_cpu.filter(|_| !h.is_empty()) {
        // From the start of warm-up: a little more than the measured window.
        let window = secs + args.warmup as f64;
        println!("loadgen CPU: {:.2} cores busy, {:.0} µs per request", cpu / window, cpu * 1e6 / h.len() as f64);
    }
    Ok(())
}

/// Releases open-loop requests at a fixed rate: a permit per request, added every
/// millisecond for the requests that have fallen due.
struct Pacer {
    started: Instant,
    rate: u64,
    due: tokio::sync::Semaphore,
    taken: AtomicU64,
}

impl Pacer {
    fn new(started: Instant, rate: u64) -> Self {
        Self { started, rate, due: tokio::sync::Semaphore::new(0), taken: AtomicU64::new(0) }
    }

    /// Adds permits as requests fall due until `end`, then enough to let every waiter see
    /// that the run is over.
    async fn run(&self, end: Instant) {
        let mut released = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < end {
            tick.tick().await;
            let due = (self.started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            if due > released {
                self.due.add_permits((due - released) as usize);
                released = due;
            }
        }
        self.due.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    /// Waits for the next request to fall due; returns when it was due.
    async fn next(&self) -> Instant {
        if let Ok(p) = self.due.acquire().await {
            p.forget();
        }
        let i = self.taken.fetch_add(1, Ordering::Relaxed);
        self.started + Duration::from_secs_f64(i as f64 / self.rate as f64)
    }
}

/// One keep-alive HTTP/1.1 connection to the server, driven directly with hyper: the load
/// generator shares the two cores with the server, so each request should cost it little.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    /// Sends one request (a POST of `body` as JSON, or a GET; with `Idempotency-Key: key` if
    /// given) and reads the whole answer; its status, or `None` if the exchange failed.
    async fn send(
        &mut self,
        addr: &str,
        authorization: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Option<http::StatusCode> {
        let mut request = http::Request::builder();
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .method(if body.is_some() { http::Method::POST } else { http::Method::GET })
            .uri(path)
            .header(http::header::HOST, addr)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .ok()?;
        self.sender.ready().await.ok()?;
        let r = self.sender.send_request(request).await.ok()?;
        let status = r.status();
        r.into_body().collect().await.ok()?;
        Some(status)
    }
}

/// The neighbour org: `rate` events/s to its execution, open loop on one connection, until
/// `end`; the latencies (µs, from when each was due) of those due after `measure_from`, and how
/// many of those were not answered 2xx.
async fn neighbour_load(
    t: &Target,
    authorization: &str,
    execution: &str,
    rate: u64,
    started: Instant,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<(u64, Histogram<u64>, u64)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    let mut conn = Connection::open(&t.addr).await?;
    let path = format!("/v1/executions/{execution}/events");
    let body = json!({ "type": "order.line.added", "payload": { "qty": 1, "sku": "Q" }, "source": "quiet" });
    for i in 0u64.. {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let status = conn.send(&t.addr, authorization, &path, Some(&body), None).await;
        if status.is_none() {
            conn = Connection::open(&t.addr).await?;
        }
        if due >= measure_from {
            match status {
                Some(s) if s.is_success() => {
                    hist.record(Instant::now().duration_since(due).as_micros().max(1) as u64)?
                }
                _ => failed += 1,
            }
        }
    }
    Ok((rate, hist, failed))
}

/// User + system CPU seconds of a process so far (Linux `/proc`), if readable.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    let hz: f64 = String::from_utf8(hz.stdout).ok()?.trim().parse().ok()?;
    Some(ticks / hz)
}

/// Time from an acknowledged append to a confirmed anchor, per event.
async fn anchor_latency(args: &Args, t: &Target, executions: &[String]) -> anyhow::Result<()> {
    let rate = if args.rate == 0 { 10 } else { args.rate };
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut pending: Vec<(String, u64, Instant)> = Vec::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut next_post = Instant::now();
    let mut n = 0u64;
    let mut last_poll = Instant::now();
    eprintln!("posting {rate} events/s for {} s; waiting for each to be confirmed", args.seconds);
    while Instant::now() < end || !pending.is_empty() {
        if Instant::now() >= next_post && Instant::now() < end {
            next_post += interval;
            n += 1;
            let e = &executions[n as usize % executions.len()];
            let body = json!({ "type": "order.line.added", "payload": { "qty": 1, "sku": "S" }, "source": "loadgen" });
            let r: Value = t.post(&format!("/v1/executions/{e}/events"), &body).await?;
            let seq = r["entries"][0]["seq"].as_u64().unwrap_or(0);
            pending.push((e.clone(), seq, Instant::now()));
        }
        if last_poll.elapsed() >= Duration::from_millis(50) {
            last_poll = Instant::now();
            let mut still = Vec::new();
            for (e, seq, t0) in pending.drain(..) {
                let p: Value = t
                    .client
                    .get(format!("{}/v1/executions/{e}/ledger/{seq}/proof", t.base))
                    .bearer_auth(&t.token)
                    .send()
                    .await?
                    .json()
                    .await?;
                if p["anchor"]["status"] == "confirmed" {
                    hist.record(t0.elapsed().as_millis().max(1) as u64)?;
                } else if t0.elapsed() > Duration::from_secs(120) {
                    anyhow::bail!("event {e}/{seq} not confirmed after 120 s: {p}");
                } else {
                    still.push((e, seq, t0));
                }
            }
            pending = still;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "mode=anchor rate={rate}/s events={} -> append-to-confirmed ms: p50 {} p95 {} p99 {} max {}",
        hist.len(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.95),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    Ok(())
}
