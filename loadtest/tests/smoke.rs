//! End-to-end smoke runs of every scenario against the real server binary, if it has been
//! built (`target/release/sockudo`, or `$SOCKUDO_BIN`); skipped with a message otherwise.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SOCKUDO_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sockudo");
    p.exists().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start_server() -> Option<Server> {
    let Some(bin) = server_binary() else {
        eprintln!("skipped: no server binary (build it with `cargo build --release -p sockudo`)");
        return None;
    };
    let (port, metrics) = (free_port(), free_port());
    let data_dir = std::env::temp_dir().join(format!("sockudo-smoke-{}-{port}", std::process::id()));
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--metrics-port",
            &metrics.to_string(),
            "--shards",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Server { child, port, data_dir })
}

fn loadtest(server: &Server, args: &[&str]) -> (i32, String) {
    let pid = server.child.id().to_string();
    let port = server.port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .args(["--port", &port, "--server-pid", &pid, "--quiet"])
        .output()
        .expect("run loadtest");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn scenarios_against_the_server() {
    let Some(server) = start_server() else { return };
    let dir = std::env::temp_dir().join(format!("loadtest-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("fanout.json");
    let html = dir.join("fanout.html");

    let (code, out) = loadtest(
        &server,
        &[
            "fanout",
            "--sockets",
            "50",
            "--channels",
            "5",
            "--rate",
            "20",
            "--duration",
            "3",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(record["passed"], true);
    assert_eq!(record["metrics"]["deliveries_expected"], 600);
    assert_eq!(record["metrics"]["deliveries_received"], 600);
    assert!(record["latency"]["publish → receipt"]["p99_us"].as_f64().unwrap() > 0.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("Latency by percentile"));

    // Binary wire formats: every delivery is counted from the binary frames.
    for format in ["msgpack", "protobuf"] {
        let (code, out) = loadtest(&server, &["fanout", "--smoke", "--protocol", "2", "--format", format]);
        assert_eq!(code, 0, "{format}: {out}");
    }

    let (code, out) = loadtest(&server, &["connect", "--smoke", "--subscribe"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("per idle connection"), "{out}");

    let (code, out) = loadtest(&server, &["churn", "--smoke"]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = loadtest(&server, &["presence", "--smoke"]);
    assert_eq!(code, 0, "{out}");

    // A presence channel over the default 100-member cap cannot converge: exit status 1.
    let (code, out) = loadtest(&server, &["presence", "--sockets", "120", "--channels", "1", "--timeout", "3"]);
    assert_eq!(code, 1, "{out}");

    // Storms of abrupt drops + resume: nothing lost, nothing duplicated, no failed resume.
    let json = dir.join("recovery.json");
    let (code, out) = loadtest(
        &server,
        &["recovery-storm", "--smoke", "--channels-per-socket", "2", "--json", json.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let m = &record["metrics"];
    assert_eq!(record["passed"], true, "{out}");
    assert_eq!(m["lost"], 0, "{out}");
    assert_eq!(m["duplicated"], 0, "{out}");
    assert_eq!(m["channels_failed"], 0, "{out}");
    assert!(m["reconnects"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(m["resumes_ok"], m["reconnects"], "{out}");
    assert!(m["channels_recovered"].as_u64().unwrap() > 0, "{out}");
    assert!(m["server_cpu_us_per_recovered_channel"].as_f64().is_some(), "{out}");
    assert!(record["latency"]["reconnect → resume_success"]["p99_us"].as_f64().is_some_and(|v| v > 0.0));
    // V2 only.
    let (code, out) = loadtest(&server, &["recovery-storm", "--smoke", "--protocol", "1"]);
    assert_eq!(code, 2, "{out}");

    // Mutable-message appends: every accepted append reaches every subscriber once, in serial
    // order, and each subscriber's reduction is GET latest's text.
    let json = dir.join("appends.json");
    let (code, out) = loadtest(&server, &["appends", "--smoke", "--json", json.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let m = &record["metrics"];
    assert_eq!(record["passed"], true, "{out}");
    assert!(m["appends_accepted"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(m["deliveries_received"], m["deliveries_expected"], "{out}");
    assert_eq!(m["missing"], 0, "{out}");
    assert_eq!(m["duplicated"], 0, "{out}");
    assert_eq!(m["reordered"], 0, "{out}");
    assert_eq!(m["reductions_mismatched"], 0, "{out}");
    assert_eq!(m["stored_texts_mismatched"], 0, "{out}");
    assert!(m["wire_bytes_per_token_per_subscriber"].as_f64().is_some_and(|b| b > 4.0), "{out}");
    assert!(m["server_cpu_us_per_append"].as_f64().is_some(), "{out}");
    assert!(record["latency"]["append → receipt"]["p99_us"].as_f64().is_some_and(|v| v > 0.0));
    // Whole texts (append_mode=full), several writers on one message.
    let (code, out) =
        loadtest(&server, &["appends", "--smoke", "--append-mode", "full", "--messages", "1", "--writers", "3"]);
    assert_eq!(code, 0, "{out}");
    // V2 only.
    let (code, out) = loadtest(&server, &["appends", "--smoke", "--protocol", "1"]);
    assert_eq!(code, 2, "{out}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_server_fails() {
    let port = free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["fanout", "--smoke", "--port", &port, "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed to connect"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["fanout", "--no-such-flag", "1"][..],
        &["nonsense"],
        &["fanout", "--batch", "11"],
        &["appends", "--fragment", "3"],
        &["appends", "--append-mode", "whole"],
        &["fanout", "--format", "msgpack"],
        &["fanout", "--protocol", "2", "--format", "cbor"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadtest")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
