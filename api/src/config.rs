//! `pled serve` configuration: defaults, then a TOML file (`--config`), then environment
//! variables (`PLED_*`), then flags; later sources win. Secrets (the JWT secret, the chain
//! signer key) come only from the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pled_core::OrgId;
use serde::Deserialize;

/// The effective settings of a running service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// RocksDB data directory. Default `./data`.
    pub data_dir: PathBuf,
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes. Default 1 MiB.
    pub body_limit: usize,
    /// Requests taking longer are answered 503 (streams excepted). Default 30 s.
    #[serde(with = "humantime_secs")]
    pub request_timeout: Duration,
    /// Origins allowed by CORS (`*` for any); empty (default) disables CORS headers.
    pub cors_origins: Vec<String>,
    /// `json` (default) or `pretty` logs.
    pub log_format: LogFormat,
    /// JWT issuer to require (needed when JWTs are enabled).
    pub jwt_issuer: Option<String>,
    /// JWT audience to require (needed when JWTs are enabled).
    pub jwt_audience: Option<String>,
    /// JWKS file with RS256 public keys.
    pub jwt_jwks_file: Option<PathBuf>,
    /// OpenAI-compatible chat-completions URL for AI rules (key from `PLED_AI_API_KEY`).
    /// Without it, AI rules use cached outputs only.
    pub ai_endpoint: Option<String>,
    /// A commit round closes this often (when entries are pending). Default 2 s.
    #[serde(with = "duration_text")]
    pub commit_interval: Duration,
    /// …or once this many entries are pending. Default 1,000,000.
    pub max_round_entries: u64,
    /// Take a snapshot of an execution's state every this many ledger entries (0 = only on
    /// demand). Default 10,000.
    pub snapshot_every: u64,
    /// Where roots are anchored: `auto` (default: `rpc_url` if given, else a local anvil started
    /// by the server), `off` (rounds and proofs stay local, marked unanchored).
    pub chain: ChainMode,
    /// JSON-RPC URL of an EVM chain (the signer key comes from `PLED_SIGNER_KEY`).
    pub rpc_url: Option<String>,
    /// `PLEDRegistry` address on that chain (deployed by `pled chain deploy`).
    pub registry: Option<String>,
    /// `PLEDToken` address on that chain.
    pub token_contract: Option<String>,
    /// Confirmations before a root counts as confirmed. Default 1.
    pub confirmations: u64,
    /// Action attempts in flight at once. Default 64.
    pub action_concurrency: usize,
    /// Longest action attempt; a slower one counts as a transient failure. Default 10 s.
    #[serde(with = "duration_text")]
    pub action_timeout: Duration,
    /// Attempts of an action job before it is dead (dead-letter). Default 8.
    pub action_max_attempts: u32,
    /// Delay before the first retry; it doubles after each failed attempt (at most 1 h),
    /// with jitter. Default 1 s.
    #[serde(with = "duration_text")]
    pub action_backoff: Duration,
    /// Replays and comparisons folding at once; more wait their turn. Default 2.
    pub replay_concurrency: usize,
    /// Write backups of the store here (at start and every `backup_every`); none without it.
    pub backup_dir: Option<PathBuf>,
    /// How often to back up. Default 1 h.
    #[serde(with = "duration_text")]
    pub backup_every: Duration,
    /// Backups kept (the newest). Default 24.
    pub backup_keep: usize,
    /// How long an `Idempotency-Key`'s answer is kept: a repeat within it is answered from
    /// the record, a later one is a new request. Default 7 days; at least
    /// [`MIN_IDEMPOTENCY_TTL`].
    #[serde(with = "duration_text")]
    pub idempotency_ttl: Duration,
    /// Requests per second each org may make (a token bucket per org); 0 (default): no limit.
    pub org_rate_limit: f64,
    /// Requests an org may make at once above its rate (the bucket's size). Default 100.
    pub org_burst: u32,
    /// Orgs with a rate and burst of their own, instead of `org_rate_limit` and `org_burst`.
    pub org_limits: BTreeMap<OrgId, OrgLimit>,
    /// The longest lifetime of an access token issued through the API, and the lifetime of
    /// one issued without `expiresIn`. Default none: tokens live until revoked unless their
    /// issuer gives a lifetime.
    #[serde(with = "duration_text::option")]
    pub token_max_lifetime: Option<Duration>,
    /// The anchoring signer's address (derived at start from the key; not configurable).
    #[serde(skip)]
    pub signer_address: Option<String>,
}

/// An org's own request rate (`[org_limits]` in the file, `--org-limit ORG=RATE[/BURST]`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrgLimit {
    /// Requests per second; 0: no limit for this org.
    pub rate: f64,
    /// The bucket's size; `org_burst` if not given.
    pub burst: Option<u32>,
}

/// Parses `acme=500` or `acme=500/1000` (org, rate, burst).
pub fn parse_org_limit(s: &str) -> Result<(OrgId, OrgLimit), String> {
    let usage = || format!("{s:?} is not ORG=RATE or ORG=RATE/BURST, like acme=500/1000");
    let (org, limit) = s.split_once('=').ok_or_else(usage)?;
    let org = OrgId::new(org.trim()).map_err(|e| e.to_string())?;
    let (rate, burst) = match limit.split_once('/') {
        Some((rate, burst)) => (rate, Some(burst.trim().parse().map_err(|_| usage())?)),
        None => (limit, None),
    };
    Ok((org, OrgLimit { rate: rate.trim().parse().map_err(|_| usage())?, burst }))
}

/// Where commit roots go.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChainMode {
    /// `--rpc-url` if given, else a local anvil started and stopped with the server.
    #[default]
    Auto,
    /// No chain: rounds and proofs stay local (anchor status `unanchored`).
    Off,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (request id, org, execution id as fields).
    Json,
    /// Human-readable.
    Pretty,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            log_format: LogFormat::Json,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_jwks_file: None,
            ai_endpoint: None,
            commit_interval: pled_committer::DEFAULT_COMMIT_INTERVAL,
            max_round_entries: pled_committer::DEFAULT_MAX_ROUND_ENTRIES,
            snapshot_every: 10_000,
            chain: ChainMode::Auto,
            rpc_url: None,
            registry: None,
            token_contract: None,
            confirmations: 1,
            action_concurrency: 64,
            action_timeout: Duration::from_secs(10),
            action_max_attempts: 8,
            action_backoff: Duration::from_secs(1),
            replay_concurrency: 2,
            backup_dir: None,
            backup_every: Duration::from_secs(3600),
            backup_keep: 24,
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            org_rate_limit: 0.0,
            org_burst: 100,
            org_limits: BTreeMap::new(),
            token_max_lifetime: None,
            signer_address: None,
        }
    }
}

/// Flags of `pled serve`; each also reads a `PLED_*` environment variable.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML config file: the flags' names with `_` as keys (docs/api.md, Configuration).
    #[arg(long, env = "PLED_CONFIG")]
    pub config: Option<PathBuf>,
    /// RocksDB data directory [default: ./data].
    #[arg(long, env = "PLED_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "PLED_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "PLED_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Request timeout in seconds [default: 30].
    #[arg(long, env = "PLED_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// CORS origins, comma-separated (`*` for any) [default: none].
    #[arg(long, env = "PLED_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Log format [default: json].
    #[arg(long, env = "PLED_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Required JWT issuer.
    #[arg(long, env = "PLED_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required JWT audience.
    #[arg(long, env = "PLED_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// JWKS file with RS256 public keys.
    #[arg(long, env = "PLED_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// OpenAI-compatible chat-completions URL for AI rules.
    #[arg(long, env = "PLED_AI_ENDPOINT")]
    pub ai_endpoint: Option<String>,
    /// Close a commit round this often: `2s`, `500ms`, `1m` [default: 2s].
    #[arg(long, env = "PLED_COMMIT_INTERVAL", value_parser = parse_duration)]
    pub commit_interval: Option<Duration>,
    /// Close a commit round once this many entries are pending [default: 1000000].
    #[arg(long, env = "PLED_MAX_ROUND_ENTRIES")]
    pub max_round_entries: Option<u64>,
    /// Snapshot an execution every this many entries; 0 = on demand only [default: 10000].
    #[arg(long, env = "PLED_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// `auto` (the RPC URL, or a local anvil) or `off` [default: auto].
    #[arg(long, env = "PLED_CHAIN", value_enum)]
    pub chain: Option<ChainMode>,
    /// JSON-RPC URL of an EVM chain; the signer key comes from PLED_SIGNER_KEY.
    #[arg(long, env = "PLED_RPC_URL")]
    pub rpc_url: Option<String>,
    /// PLEDRegistry address (with --rpc-url).
    #[arg(long, env = "PLED_REGISTRY")]
    pub registry: Option<String>,
    /// PLEDToken address (with --rpc-url).
    #[arg(long, env = "PLED_TOKEN_CONTRACT")]
    pub token_contract: Option<String>,
    /// Confirmations before a root counts as confirmed [default: 1].
    #[arg(long, env = "PLED_CONFIRMATIONS")]
    pub confirmations: Option<u64>,
    /// Action attempts in flight at once [default: 64].
    #[arg(long, env = "PLED_ACTION_CONCURRENCY")]
    pub action_concurrency: Option<usize>,
    /// Longest action attempt: `10s`, `500ms` [default: 10s].
    #[arg(long, env = "PLED_ACTION_TIMEOUT", value_parser = parse_duration)]
    pub action_timeout: Option<Duration>,
    /// Attempts of an action job before it is dead [default: 8].
    #[arg(long, env = "PLED_ACTION_MAX_ATTEMPTS")]
    pub action_max_attempts: Option<u32>,
    /// Delay before the first retry, doubling after each failure: `1s`, `200ms` [default: 1s].
    #[arg(long, env = "PLED_ACTION_BACKOFF", value_parser = parse_duration)]
    pub action_backoff: Option<Duration>,
    /// Replays and comparisons folding at once; more wait their turn [default: 2].
    #[arg(long, env = "PLED_REPLAY_CONCURRENCY")]
    pub replay_concurrency: Option<usize>,
    /// Back the store up into this directory, at start and every --backup-every [default: no backups].
    #[arg(long, env = "PLED_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// How often to back up: `1h`, `30m` [default: 1h].
    #[arg(long, env = "PLED_BACKUP_EVERY", value_parser = parse_duration)]
    pub backup_every: Option<Duration>,
    /// Backups kept (the newest) [default: 24].
    #[arg(long, env = "PLED_BACKUP_KEEP")]
    pub backup_keep: Option<usize>,
    /// Keep each Idempotency-Key's answer this long, at least 1h: `7d`, `36h` [default: 7d].
    #[arg(long, env = "PLED_IDEMPOTENCY_TTL", value_parser = parse_duration)]
    pub idempotency_ttl: Option<Duration>,
    /// Requests per second each org may make, e.g. `500` or `0.5`; over it, 429 [default: 0, no limit].
    #[arg(long, env = "PLED_ORG_RATE_LIMIT")]
    pub org_rate_limit: Option<f64>,
    /// Requests an org may make at once above its rate [default: 100].
    #[arg(long, env = "PLED_ORG_BURST")]
    pub org_burst: Option<u32>,
    /// An org's own rate and burst, `acme=500/1000` or `acme=0` (no limit); repeat, or
    /// comma-separate in PLED_ORG_LIMITS [default: none].
    #[arg(long = "org-limit", env = "PLED_ORG_LIMITS", value_delimiter = ',', value_parser = parse_org_limit)]
    pub org_limits: Vec<(OrgId, OrgLimit)>,
    /// Longest lifetime of an access token issued through the API, also the lifetime of one
    /// issued without expiresIn: `90d` [default: none, tokens live until revoked].
    #[arg(long, env = "PLED_TOKEN_MAX_LIFETIME", value_parser = parse_duration)]
    pub token_max_lifetime: Option<Duration>,
}

/// [`ServeConfig::idempotency_ttl`]'s default.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest [`ServeConfig::idempotency_ttl`]: longer than the ±5 minutes in which a signed
/// webhook is accepted and deduplicated by its record (`signing::REPLAY_WINDOW_SECS`), and than
/// the retries of clients and action jobs.
pub const MIN_IDEMPOTENCY_TTL: Duration = Duration::from_secs(3600);

/// Parses `250ms`, `2s`, `1m`, `1h`, `7d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 2s, 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err("duration must be positive".into());
    }
    Ok(d)
}

impl ServeConfig {
    /// Defaults < file < environment/flags.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let mut c = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let a = args.clone();
        if let Some(v) = a.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = a.listen {
            c.listen = v;
        }
        if let Some(v) = a.body_limit {
            c.body_limit = v;
        }
        if let Some(v) = a.request_timeout {
            c.request_timeout = Duration::from_secs(v);
        }
        if let Some(v) = a.cors_origins {
            c.cors_origins = v.into_iter().filter(|o| !o.is_empty()).collect();
        }
        if let Some(v) = a.log_format {
            c.log_format = v;
        }
        c.jwt_issuer = a.jwt_issuer.or(c.jwt_issuer);
        c.jwt_audience = a.jwt_audience.or(c.jwt_audience);
        c.jwt_jwks_file = a.jwt_jwks_file.or(c.jwt_jwks_file);
        c.ai_endpoint = a.ai_endpoint.or(c.ai_endpoint);
        if let Some(v) = a.commit_interval {
            c.commit_interval = v;
        }
        if let Some(v) = a.max_round_entries {
            c.max_round_entries = v.max(1);
        }
        if let Some(v) = a.snapshot_every {
            c.snapshot_every = v;
        }
        if let Some(v) = a.chain {
            c.chain = v;
        }
        c.rpc_url = a.rpc_url.or(c.rpc_url);
        c.registry = a.registry.or(c.registry);
        c.token_contract = a.token_contract.or(c.token_contract);
        if let Some(v) = a.confirmations {
            c.confirmations = v.max(1);
        }
        if let Some(v) = a.action_concurrency {
            c.action_concurrency = v.max(1);
        }
        if let Some(v) = a.action_timeout {
            c.action_timeout = v;
        }
        if let Some(v) = a.action_max_attempts {
            c.action_max_attempts = v.max(1);
        }
        if let Some(v) = a.action_backoff {
            c.action_backoff = v;
        }
        if let Some(v) = a.replay_concurrency {
            c.replay_concurrency = v.max(1);
        }
        c.backup_dir = a.backup_dir.or(c.backup_dir);
        if let Some(v) = a.backup_every {
            c.backup_every = v;
        }
        if let Some(v) = a.backup_keep {
            c.backup_keep = v.max(1);
        }
        if let Some(v) = a.idempotency_ttl {
            c.idempotency_ttl = v;
        }
        if let Some(v) = a.org_rate_limit {
            c.org_rate_limit = v;
        }
        if let Some(v) = a.org_burst {
            c.org_burst = v;
        }
        c.org_limits.extend(a.org_limits);
        c.token_max_lifetime = a.token_max_lifetime.or(c.token_max_lifetime);
        anyhow::ensure!(
            c.org_rate_limit.is_finite() && c.org_rate_limit >= 0.0,
            "org_rate_limit must be a number of requests per second, 0 for no limit (it is {})",
            c.org_rate_limit
        );
        anyhow::ensure!(c.org_burst >= 1, "org_burst must be at least 1");
        for (org, l) in &c.org_limits {
            anyhow::ensure!(
                l.rate.is_finite() && l.rate >= 0.0,
                "the rate of org {org} must be a number of requests per second, 0 for no limit (it is {})",
                l.rate
            );
            anyhow::ensure!(l.burst != Some(0), "the burst of org {org} must be at least 1");
        }
        anyhow::ensure!(
            c.idempotency_ttl >= MIN_IDEMPOTENCY_TTL,
            "idempotency_ttl must be at least 1h (it is {:?}): a shorter one would let a retried \
             request, or a signed webhook replayed within its 5 minutes, apply twice",
            c.idempotency_ttl
        );
        Ok(c)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// For settings without a default.
    pub(super) mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pled.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nbody_limit = 2048\ncors_origins = [\"https://a.example\"]\n")
            .unwrap();
        let args = ServeArgs { config: Some(file), body_limit: Some(4096), ..Default::default() };
        let c = ServeConfig::load(&args).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.body_limit, 4096);
        assert_eq!(c.cors_origins, ["https://a.example"]);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    /// [`ServeConfig::load`] with a config file holding `toml` and no flags.
    fn load_file(toml: &str) -> anyhow::Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pled.toml");
        std::fs::write(&file, toml).unwrap();
        ServeConfig::load(&ServeArgs { config: Some(file), ..Default::default() })
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = load_file("listne = \"0.0.0.0:9000\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("listne"), "{err:#}");
    }

    #[test]
    fn the_idempotency_ttl_reads_days_and_has_a_floor() {
        assert_eq!(ServeConfig::load(&ServeArgs::default()).unwrap().idempotency_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert!(parse_duration("2w").unwrap_err().contains("ms, s, m, h or d"));
        let args = ServeArgs { idempotency_ttl: Some(Duration::from_secs(36 * 3600)), ..Default::default() };
        assert_eq!(ServeConfig::load(&args).unwrap().idempotency_ttl, Duration::from_secs(36 * 3600));

        let short = ServeArgs { idempotency_ttl: Some(Duration::from_secs(600)), ..Default::default() };
        let err = ServeConfig::load(&short).unwrap_err();
        assert!(format!("{err:#}").contains("idempotency_ttl must be at least 1h"), "{err:#}");
        let err = load_file("idempotency_ttl = \"30m\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("at least 1h"), "a file is held to it too: {err:#}");
    }

    #[test]
    fn org_rate_limits_are_off_by_default_and_checked() {
        let c = ServeConfig::load(&ServeArgs::default()).unwrap();
        assert_eq!((c.org_rate_limit, c.org_burst), (0.0, 100));
        let args = ServeArgs { org_rate_limit: Some(0.5), org_burst: Some(3), ..Default::default() };
        let c = ServeConfig::load(&args).unwrap();
        assert_eq!((c.org_rate_limit, c.org_burst), (0.5, 3));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let args = ServeArgs { org_rate_limit: Some(bad), ..Default::default() };
            assert!(format!("{:#}", ServeConfig::load(&args).unwrap_err()).contains("org_rate_limit"), "{bad}");
        }
        let err = ServeConfig::load(&ServeArgs { org_burst: Some(0), ..Default::default() }).unwrap_err();
        assert!(format!("{err:#}").contains("org_burst must be at least 1"), "{err:#}");
    }

    #[test]
    fn orgs_of_their_own_come_from_the_file_and_flags_and_are_checked() {
        let c = load_file("[org_limits]\nacme = { rate = 500, burst = 1000 }\nglobex = { rate = 0 }\n").unwrap();
        let acme = OrgId::new("acme").unwrap();
        assert_eq!(c.org_limits[&acme], OrgLimit { rate: 500.0, burst: Some(1000) });
        assert_eq!(c.org_limits[&OrgId::new("globex").unwrap()], OrgLimit { rate: 0.0, burst: None });

        assert_eq!(parse_org_limit("acme=0.5"), Ok((acme.clone(), OrgLimit { rate: 0.5, burst: None })));
        for bad in ["acme", "acme=fast", "acme=5/x", "Not An Org=5", "acme=5/-1"] {
            assert!(parse_org_limit(bad).is_err(), "{bad}");
        }
        let args = ServeArgs { org_limits: vec![parse_org_limit("acme=7/9").unwrap()], ..Default::default() };
        assert_eq!(ServeConfig::load(&args).unwrap().org_limits[&acme], OrgLimit { rate: 7.0, burst: Some(9) });
        for (bad, says) in [("acme=-1", "rate of org acme"), ("acme=1/0", "burst of org acme")] {
            let args = ServeArgs { org_limits: vec![parse_org_limit(bad).unwrap()], ..Default::default() };
            let err = ServeConfig::load(&args).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{err:#}");
        }
        let err = load_file("[org_limits]\n\"Bad Org\" = { rate = 1 }\n").unwrap_err();
        assert!(format!("{err:#}").contains("Bad Org"), "{err:#}");
        let err = load_file("[org_limits]\nacme = { rate = 1, brust = 2 }\n").unwrap_err();
        assert!(format!("{err:#}").contains("brust"), "{err:#}");
    }

    #[test]
    fn a_token_max_lifetime_is_unset_by_default_and_read_from_the_file_or_a_flag() {
        assert_eq!(ServeConfig::load(&ServeArgs::default()).unwrap().token_max_lifetime, None);
        let c = load_file("token_max_lifetime = \"90d\"\n").unwrap();
        assert_eq!(c.token_max_lifetime, Some(Duration::from_secs(90 * 86_400)));
        let args = ServeArgs { token_max_lifetime: Some(Duration::from_secs(3600)), ..Default::default() };
        assert_eq!(ServeConfig::load(&args).unwrap().token_max_lifetime, Some(Duration::from_secs(3600)));
        let err = load_file("token_max_lifetime = \"soon\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("not a duration"), "{err:#}");
    }
}
