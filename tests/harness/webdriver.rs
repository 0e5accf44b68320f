//! A small WebDriver client (W3C protocol over HTTP/1.1, JSON) for Debian's chromedriver and a
//! headless Chromium. A missing chromium or chromedriver is a failure, never a skip.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::free_tcp_port;

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn find(names: &[&str]) -> String {
    for n in names {
        for dir in ["/usr/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(n);
            if p.is_file() {
                return p.display().to_string();
            }
        }
    }
    panic!("none of {names:?} is installed (apt-get install chromium chromium-driver; scripts/sandbox.sh installs them): end-to-end tests never skip")
}

/// One HTTP request to chromedriver; the JSON answer's `value`.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let data = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}", data.len());
    s.write_all(req.as_bytes()).map_err(|e| format!("write to chromedriver: {e}"))?;
    // chromedriver keeps the connection open: read the head, then Content-Length bytes (or
    // the chunks, or to the end).
    let mut raw = vec![];
    let mut buf = [0u8; 65536];
    let (head, body) = loop {
        let n = s.read(&mut buf).map_err(|e| format!("read from chromedriver: {e}"))?;
        raw.extend_from_slice(&buf[..n]);
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = end {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
            });
            let chunked = head.contains("transfer-encoding: chunked");
            let have = raw.len() - end - 4;
            let done = match len {
                Some(l) => have >= l,
                None if chunked => raw.ends_with(b"0\r\n\r\n"),
                None => n == 0,
            };
            if done {
                let body = String::from_utf8_lossy(&raw[end + 4..]).to_string();
                break (head, if chunked { dechunk(&body) } else { body });
            }
        }
        if n == 0 {
            return Err("chromedriver closed the connection early".into());
        }
    };
    let _ = head;
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| format!("chromedriver's answer is not JSON ({e}): {body}"))?;
    if let Some(err) = v["value"]["error"].as_str() {
        return Err(format!("{err}: {}", v["value"]["message"].as_str().unwrap_or("")));
    }
    Ok(v["value"].clone())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Standard base64 (the screenshots and PDFs WebDriver returns).
pub fn base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (vec![], 0u32, 0);
    for v in text.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl Browser {
    /// chromedriver on a free port, and a session of headless Chromium.
    pub fn start() -> Browser {
        let driver_bin = find(&["chromedriver"]);
        let chromium = find(&["chromium", "chromium-browser"]);
        let port = free_tcp_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let t = Instant::now();
        while http(port, "GET", "/status", None).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000", "--disable-gpu", "--lang=en"]
        }}}});
        let mut b = Browser { driver, port, session: String::new() };
        let v = http(port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("a Chromium session: {e}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        http(self.port, method, &p, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap_or("").to_string()
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''", vec![])
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None).as_str().unwrap_or("").to_string()
    }

    pub fn script(&self, code: &str, args: Vec<Value>) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": code, "args": args})))
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    pub fn has(&self, css: &str) -> bool {
        self.script("return document.querySelector(arguments[0]) !== null", vec![json!(css)])
            .as_bool()
            .unwrap_or(false)
    }

    pub fn type_in(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{e}/value"), Some(json!({"text": text})));
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Polls `pred` on the page's text until it holds (or panics with the text).
    pub fn wait_text(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let text = self.text();
            if pred(&text) {
                return text;
            }
            assert!(
                t.elapsed() < timeout,
                "waited {timeout:?} for {what}; the page ({}) says:\n{text}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls a script until it returns true.
    pub fn wait_script(&self, what: &str, timeout: Duration, code: &str) {
        let t = Instant::now();
        while self.script(code, vec![]) != json!(true) {
            assert!(
                t.elapsed() < timeout,
                "waited {timeout:?} for {what} on {}:\n{}",
                self.url(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn screenshot(&self, to: &Path) {
        let v = self.cmd("GET", "/screenshot", None);
        std::fs::write(to, base64(v.as_str().unwrap_or(""))).expect("write a screenshot");
    }

    /// The page printed to PDF by the browser (WebDriver's print command).
    pub fn print_pdf(&self) -> Vec<u8> {
        let v = self.cmd("POST", "/print", Some(json!({"background": true})));
        base64(v.as_str().unwrap_or(""))
    }

    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
