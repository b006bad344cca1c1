//! Command line: `loadtest <scenario> [--flag value | --flag=value | --switch]…`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use crate::pusher::Protocol;

pub const USAGE: &str = "\
usage: loadtest <scenario> [options]

scenarios:
  fanout          N sockets on C channels, HTTP publishes at R/s for D s; latency + completeness
  connect         open N sockets as fast as allowed and hold them (RSS / CPU per connection)
  churn           connect → subscribe → unsubscribe → close cycles at R/s for D s
  presence        M members join C presence channels, then some leave; view convergence time
  recovery-storm  V2 sockets dropped in storms and resumed; lost / duplicated messages
  appends         V2 subscribers on one channel, W HTTP writers appending to M mutable messages

common options:
  --host H (127.0.0.1)  --port P (6001)  --app-id ID (app-id)  --key K (app-key)
  --socket-ports P,P,…  spread the WebSocket sockets over these ports (socket i on the
                        i-th modulo their number; several nodes of one cluster); HTTP
                        publishes still go to --port. Default: --port
  --secret S (app-secret)  --protocol 1|2 (1)  --threads T (1)
  --token               with --protocol 2: every socket connects with one capability token
                        (HS256, kid = key, signed with the secret, granting everything for 1 h)
  --format json|msgpack|protobuf  with --protocol 2: the sockets' wire format (json); the
                        harness still sends JSON text frames, which the server reads on any
                        connection, and reads the event name of each binary frame
  --source-ips K        bind sockets to 127.0.0.1..127.0.0.K (0 = kernel's choice; default 0)
  --concurrency N       connects in progress at once (500)
  --connect-timeout S   until connection_established (10)
  --server-pid PID      sample the server's CPU time and RSS from /proc
  --json FILE  --html FILE  --quiet (no progress line)
  --smoke               small, quick defaults (any option given still wins)

fanout:    --sockets N (100) --channels C (10) --rate EVENTS/S (100) --duration S (10)
           --payload BYTES (200) --drain S (5) --batch B (1: /events, >1: /batch_events, max 10)
           --publish-conns N (4) --pipeline N (32) --setup-timeout S (120)
           --private (private-… channels, subscribed with auth)
           --filters F (0; with --protocol 2: F distinct tag filters over the sockets, all passed)
           --delta fossil|xdelta3 (with --protocol 2: subscribe with deltas)
connect:   --sockets N (1000) --hold S (5) --subscribe --channels C (10) --connect-rate R/S (0 = max)
churn:     --rate CYCLES/S (50) --duration S (10) --channels C (10) --cycle-timeout S (10)
presence:  --sockets M (100) --channels C (2) --leave-fraction F (0.5) --leave unsubscribe|close
           --timeout S (30)
recovery-storm: --sockets N (1000) --channels C (10) --channels-per-socket K (1) --rate R (100)
           --duration S (10) --storm-every S (2) --disconnect-fraction F (0.2) --payload BYTES (100)
           --drain S (10) --publish-conns N (4) --pipeline N (32) --setup-timeout S (120)
           (always Protocol V2; the server needs connection recovery)
appends:   --subscribers N (100) --messages M (1) --writers W (4) --duration S (10)
           --fragment BYTES (4) --append-mode delta|full (delta) --drain S (5) --setup-timeout S (120)
           --channel-prefix P (lt-appends-; private-ai-…: an AI channel, appends rolled up)
           (always Protocol V2; the server needs versioned messages and history)

exit status: 0 pass, 1 the run failed its checks (incomplete deliveries, failed sockets, lost or
duplicated messages, failed resumes, appends missing, duplicated, out of order or reduced to
another text than GET latest's, …),
2 usage or setup error.
";

const SWITCHES: &[&str] = &["subscribe", "private", "smoke", "quiet", "help", "token"];

/// Parsed flags; each is looked up by the scenario that understands it.
pub struct Args {
    pub scenario: String,
    flags: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut it = argv.iter();
        let mut scenario = None;
        let mut flags = BTreeMap::new();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None if SWITCHES.contains(&name) => (name.to_string(), "true".to_string()),
                    None => {
                        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                        (name.to_string(), v.clone())
                    }
                };
                flags.insert(name, value);
            } else if a == "-h" {
                flags.insert("help".into(), "true".into());
            } else if scenario.is_none() {
                scenario = Some(a.clone());
            } else {
                return Err(format!("unexpected argument {a:?}"));
            }
        }
        let scenario = match scenario {
            Some(s) => s,
            None if flags.contains_key("help") => "help".into(),
            None => return Err("no scenario given".into()),
        };
        Ok(Args { scenario, flags, used: RefCell::new(BTreeSet::new()) })
    }

    pub fn has(&self, name: &str) -> bool {
        self.used.borrow_mut().insert(name.to_string());
        self.flags.contains_key(name)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.has(name) && self.flags[name] != "false"
    }

    pub fn str(&self, name: &str, default: &str) -> String {
        self.used.borrow_mut().insert(name.to_string());
        self.flags.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    /// A number; `smoke` is the default under `--smoke`.
    pub fn num<T: FromStr + Copy>(&self, name: &str, default: T, smoke: T) -> Result<T, String> {
        self.used.borrow_mut().insert(name.to_string());
        match self.flags.get(name) {
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
            None if self.flags.contains_key("smoke") => Ok(smoke),
            None => Ok(default),
        }
    }

    pub fn opt_num<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.used.borrow_mut().insert(name.to_string());
        self.flags.get(name).map(|v| v.parse().map_err(|_| format!("--{name}: bad value {v:?}"))).transpose()
    }

    /// Errors on flags no one asked for (typos, options of another scenario).
    pub fn finish(&self) -> Result<(), String> {
        let used = self.used.borrow();
        let unknown: Vec<_> = self.flags.keys().filter(|k| !used.contains(*k)).map(|k| format!("--{k}")).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown option(s) for {}: {}", self.scenario, unknown.join(" ")))
        }
    }

    /// All flags as given (for the report).
    pub fn given(&self) -> Vec<(String, String)> {
        self.flags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Options every scenario has.
#[derive(Clone, Debug)]
pub struct Common {
    pub host: String,
    pub port: u16,
    /// Where the WebSocket sockets connect, round-robin (`--socket-ports`; default `port`).
    pub socket_ports: Vec<u16>,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    pub proto: Protocol,
    pub threads: usize,
    pub source_ips: u32,
    pub concurrency: usize,
    pub connect_timeout_s: f64,
    pub server_pid: Option<u32>,
    pub json: Option<String>,
    pub html: Option<String>,
    pub quiet: bool,
    /// A capability token every socket connects with (`--token`).
    pub token: Option<String>,
    /// A binary wire format the sockets ask for (`--format`).
    pub format: Option<&'static str>,
}

impl Common {
    pub fn parse(a: &Args) -> Result<Common, String> {
        let proto = match a.num("protocol", 1u8, 1)? {
            1 | 7 => Protocol::V1,
            2 => Protocol::V2,
            p => return Err(format!("--protocol: {p} is neither 1 nor 2")),
        };
        let key = a.str("key", "app-key");
        let secret = a.str("secret", "app-secret");
        let token = match (a.switch("token"), proto) {
            (false, _) => None,
            (true, Protocol::V2) => Some(crate::signing::capability_token(&key, &secret)),
            (true, Protocol::V1) => return Err("--token needs --protocol 2".into()),
        };
        let format = match (a.str("format", "json").as_str(), proto) {
            ("json", _) => None,
            ("msgpack", Protocol::V2) => Some("msgpack"),
            ("protobuf", Protocol::V2) => Some("protobuf"),
            (f @ ("msgpack" | "protobuf"), Protocol::V1) => return Err(format!("--format {f} needs --protocol 2")),
            (f, _) => return Err(format!("--format: {f} is none of json, msgpack, protobuf")),
        };
        let threads = a.num("threads", 1usize, 1)?;
        if threads == 0 || threads > 16 {
            return Err("--threads: 1..=16".into());
        }
        let port = a.num("port", 6001u16, 6001)?;
        let socket_ports = match a.has("socket-ports") {
            false => vec![port],
            true => a
                .str("socket-ports", "")
                .split(',')
                .map(|p| p.trim().parse::<u16>().map_err(|_| format!("--socket-ports: bad port {p:?}")))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Common {
            host: a.str("host", "127.0.0.1"),
            port,
            socket_ports,
            app_id: a.str("app-id", "app-id"),
            key,
            secret,
            proto,
            threads,
            source_ips: a.num("source-ips", 0u32, 0)?,
            concurrency: a.num("concurrency", 500usize, 100)?.max(1),
            connect_timeout_s: a.num("connect-timeout", 10.0f64, 10.0)?,
            server_pid: a.opt_num("server-pid")?,
            json: a.has("json").then(|| a.str("json", "")),
            html: a.has("html").then(|| a.str("html", "")),
            quiet: {
                a.switch("smoke"); // read by Args::num
                a.switch("quiet")
            },
            token,
            format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_flags_and_rejects_unknown() {
        let a = args("fanout --sockets 50 --rate=20 --subscribe --json out.json");
        assert_eq!(a.scenario, "fanout");
        assert_eq!(a.num("sockets", 1u32, 1).unwrap(), 50);
        assert_eq!(a.num("rate", 1.0f64, 1.0).unwrap(), 20.0);
        assert!(a.switch("subscribe"));
        assert_eq!(a.num("duration", 10u32, 3).unwrap(), 10);
        assert!(a.finish().is_err(), "--json not consumed yet");
        let c = Common::parse(&a).unwrap();
        assert_eq!(c.json.as_deref(), Some("out.json"));
        assert_eq!(c.port, 6001);
        a.finish().unwrap();
        assert!(Args::parse(&["fanout".into(), "--rate".into()]).is_err());
        let s = args("fanout --smoke --rate 7");
        assert_eq!(s.num("duration", 10u32, 3).unwrap(), 3);
        assert_eq!(s.num("rate", 100u32, 20).unwrap(), 7);
    }
}
