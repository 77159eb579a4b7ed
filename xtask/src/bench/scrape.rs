//! Case 8 (issue 27's target: a kept-alive scrape of `zcprof serve` is answered within 5 ms at
//! the 99th percentile; `tiny_http`'s took 44 ms, its header and body leaving in separate sends).
//! serve counts a name no task has, so a scrape's time is serve's HTTP, reading the kernel's
//! maps and rendering. Beside it: the same over TLS with a password (`--web.config.file`), a
//! new connection per scrape, and nginx sending a file of the scrape's size on a kept-alive
//! connection, the floor of an HTTP exchange on this machine. Each kept-alive client is one
//! curl holding one connection for all its requests (`%{num_connects}` shows the reuse),
//! timing each (`%{time_total}`); the variants alternate, repetition by repetition.
#[allow(clippy::wildcard_imports)]
use super::*;

use super::serve::{NGINX_PORT, start_nginx, stop};

/// serve's address in this case.
const LISTEN: &str = "127.0.0.1:18465";
/// Scrapes per variant and repetition.
const REQUESTS: usize = 400;
/// New connections per repetition (each a curl of its own).
const FRESH: usize = 40;
/// The target: a kept-alive scrape's 99th percentile, in milliseconds.
const TARGET_P99_MS: f64 = 5.0;
const USER: &str = "prometheus";
const PASSWORD: &str = "bench-password";

/// How a variant's client reaches its server.
pub(super) struct Client {
    pub(super) name: &'static str,
    pub(super) url: String,
    pub(super) curl: Vec<String>,
    /// One connection for every request (else one per request).
    pub(super) kept_alive: bool,
}

pub(super) fn scrape(bins: &Bins, dir: &Path, opts: &Options, results: &mut Results) -> Result<()> {
    if !have("nginx") || !have("curl") {
        eprintln!("bench: SKIPPING scrape: nginx or curl is missing");
        return Ok(());
    }
    let dir = dir.join("scrape");
    std::fs::create_dir_all(&dir)?;
    let secure = web_config(&dir)?;
    let mut nginx = start_nginx(&dir)?;
    let outcome = serving(bins, &dir, &secure, |clients| measure(clients, opts.reps));
    stop(&mut nginx);
    let series = outcome?;
    let (table, json, verdict) = summary(&series);
    results.sections.push((
        "8. Scrape latency: `zcprof serve`'s /metrics, kept alive, over TLS, and fresh".into(),
        format!(
            "{REQUESTS} scrapes per kept-alive variant ({FRESH} for the fresh one) in each of \
             {reps} repetitions, the variants one after another in each; serve counts \
             `--comm zcpbenchnone` (no task), so each scrape reads the maps and renders every \
             series of its header. nginx sends a file of the scrape's size. Milliseconds per \
             request as curl times it (`%{{time_total}}`), every request of the run pooled.\n\n\
             {table}\n{verdict}",
            reps = opts.reps
        ),
    ));
    results.json.insert("scrape".into(), json);
    Ok(())
}

/// A certificate for 127.0.0.1 made for the case, a bcrypt hash of the password, and the web
/// config naming them; returns serve's extra arguments and curl's.
fn web_config(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    std::fs::write(dir.join("cert.pem"), made.cert.pem())?;
    std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem())?;
    // bcrypt's usual cost: serve remembers a verified header, so only the first scrape pays.
    let hash = bcrypt::hash(PASSWORD, 10)?;
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  \
             {USER}: {hash}\n"
        ),
    )?;
    Ok((
        vec!["--web.config.file".to_owned(), web.display().to_string()],
        vec![
            "--cacert".to_owned(),
            dir.join("cert.pem").display().to_string(),
            "-u".to_owned(),
            format!("{USER}:{PASSWORD}"),
        ],
    ))
}

/// Runs `f` with the clients while a plain and a TLS serve run (one after the other would
/// leave a program set loaded twice; they share the kernel's maps' cost alike).
fn serving<T>(
    bins: &Bins,
    dir: &Path,
    (serve_tls, curl_tls): &(Vec<String>, Vec<String>),
    f: impl FnOnce(&[Client]) -> Result<T>,
) -> Result<T> {
    let tls_listen = "127.0.0.1:18466";
    let mut plain = start_serve(bins, LISTEN, &[])?;
    let tls = start_serve(bins, tls_listen, serve_tls);
    let mut tls = match tls {
        Ok(t) => t,
        Err(e) => {
            stop(&mut plain);
            return Err(e);
        }
    };
    let clients = clients(dir, tls_listen, curl_tls);
    let outcome = clients.and_then(|c| f(&c));
    stop(&mut tls);
    stop(&mut plain);
    outcome
}

fn clients(dir: &Path, tls_listen: &str, curl_tls: &[String]) -> Result<Vec<Client>> {
    // nginx's file: as large as a scrape's body.
    let body = fetch(&format!("http://{LISTEN}/metrics"), &[])?;
    std::fs::write(dir.join("www/scrape.txt"), &body)?;
    Ok(vec![
        Client {
            name: "serve, kept alive",
            url: format!("http://{LISTEN}/metrics"),
            curl: Vec::new(),
            kept_alive: true,
        },
        Client {
            name: "serve over TLS with a password, kept alive",
            url: format!("https://{tls_listen}/metrics"),
            curl: curl_tls.to_vec(),
            kept_alive: true,
        },
        Client {
            name: "serve, a new connection each",
            url: format!("http://{LISTEN}/metrics"),
            curl: Vec::new(),
            kept_alive: false,
        },
        Client {
            name: "nginx, the same bytes, kept alive (floor)",
            url: format!("http://127.0.0.1:{NGINX_PORT}/scrape.txt"),
            curl: Vec::new(),
            kept_alive: true,
        },
    ])
}

/// `zcprof serve` on `listen` with `extra` arguments, answering.
fn start_serve(bins: &Bins, listen: &str, extra: &[String]) -> Result<Child> {
    let mut child = Command::new(&bins.zcprof)
        .args(["serve", "--comm", "zcpbenchnone", "--listen", listen])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting zcprof serve")?;
    let start = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        if start.elapsed() > Duration::from_secs(30) || matches!(child.try_wait(), Ok(Some(_))) {
            stop(&mut child);
            bail!("zcprof serve did not listen on {listen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// One GET's body.
fn fetch(url: &str, extra: &[String]) -> Result<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-sf"])
        .args(extra)
        .arg(url)
        .output()?;
    if !out.status.success() {
        bail!("curl {url}: exit {:?}", out.status.code());
    }
    Ok(out.stdout)
}

/// Each client's milliseconds per request, every repetition pooled, and how many of its
/// kept-alive requests opened a connection.
type Series = Vec<(&'static str, Vec<f64>, usize)>;

fn measure(clients: &[Client], reps: usize) -> Result<Series> {
    let mut series: Series = clients.iter().map(|c| (c.name, Vec::new(), 0)).collect();
    for _ in 0..reps {
        for (client, (_, times, connects)) in clients.iter().zip(&mut series) {
            let (t, c) = if client.kept_alive {
                kept_alive(client, REQUESTS)?
            } else {
                fresh(client, FRESH)?
            };
            times.extend(t);
            *connects += c;
        }
    }
    Ok(series)
}

/// `n` requests through one curl, which keeps its connection; milliseconds each, and the
/// connections it opened.
pub(super) fn kept_alive(client: &Client, n: usize) -> Result<(Vec<f64>, usize)> {
    let mut config = String::new();
    for _ in 0..n {
        let _ = writeln!(config, "url = \"{}\"\noutput = \"/dev/null\"", client.url);
    }
    let mut child = Command::new("curl")
        .args(["-sf", "-w", "%{time_total} %{num_connects}\\n", "-K", "-"])
        .args(&client.curl)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("curl's stdin")?
        .write_all(config.as_bytes())?;
    let out = child.wait_with_output()?;
    parse(&out.stdout, n)
}

/// `n` requests, a curl (and a connection) each.
pub(super) fn fresh(client: &Client, n: usize) -> Result<(Vec<f64>, usize)> {
    let mut times = Vec::new();
    let mut connects = 0;
    for _ in 0..n {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-w",
                "%{time_total} %{num_connects}\\n",
            ])
            .args(&client.curl)
            .arg(&client.url)
            .output()?;
        let (t, c) = parse(&out.stdout, 1)?;
        times.extend(t);
        connects += c;
    }
    Ok((times, connects))
}

/// curl's `time_total num_connects` lines: milliseconds, and the connections opened.
fn parse(out: &[u8], n: usize) -> Result<(Vec<f64>, usize)> {
    let text = String::from_utf8_lossy(out);
    let mut times = Vec::new();
    let mut connects = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(t), Some(c)) = (f.next(), f.next()) else {
            continue;
        };
        times.push(t.parse::<f64>()? * 1000.0);
        connects += c.parse::<usize>()?;
    }
    if times.len() != n {
        bail!("curl answered {} of {n} requests", times.len());
    }
    Ok((times, connects))
}

/// The quantile of `v` at `per_mille` thousandths (nearest rank).
pub(super) fn quantile(v: &[f64], per_mille: usize) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = (per_mille * s.len()).div_ceil(1000).max(1);
    s[rank.min(s.len()) - 1]
}

fn summary(series: &Series) -> (String, Value, String) {
    let mut table = "| variant | requests | connections opened | p50 ms | p99 ms | max ms |\n\
                     |---|---|---|---|---|---|\n"
        .to_owned();
    let mut json = serde_json::Map::new();
    for (name, times, connects) in series {
        let (p50, p99) = (quantile(times, 500), quantile(times, 990));
        let _ = writeln!(
            table,
            "| {name} | {} | {connects} | {p50:.2} | {p99:.2} | {:.2} |",
            times.len(),
            max(times)
        );
        json.insert(
            (*name).to_owned(),
            json!({ "requests": times.len(), "connections": connects, "p50_ms": p50,
                    "p99_ms": p99, "max_ms": max(times) }),
        );
    }
    let p99 = |i: usize| series.get(i).map_or(f64::NAN, |s| quantile(&s.1, 990));
    let met = |v: f64| {
        if v < TARGET_P99_MS { "met" } else { "NOT met" }
    };
    let verdict = format!(
        "- Target: a kept-alive scrape's p99 under {TARGET_P99_MS} ms: measured {:.2} ms: {}; \
         over TLS with a password {:.2} ms: {}.\n",
        p99(0),
        met(p99(0)),
        p99(1),
        met(p99(1))
    );
    (table, Value::Object(json), verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&v, 990) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 500) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&[3.0], 990) - 3.0).abs() < f64::EPSILON);
        assert!(quantile(&[], 500).is_nan());
    }

    #[test]
    fn curls_lines_give_milliseconds_and_connections() {
        let (t, c) = parse(b"0.001500 1\n0.000250 0\n", 2).unwrap();
        assert_eq!(t.len(), 2);
        assert!((t[0] - 1.5).abs() < 1e-9 && (t[1] - 0.25).abs() < 1e-9);
        assert_eq!(c, 1);
        assert!(parse(b"0.1 1\n", 2).is_err());
    }
}
