//! Server-rendered HTML: every value from a log, the configuration or a request goes through
//! `esc`; the charts are inline SVG.

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a URL query value (then HTML-escaped by the caller if needed: the output
/// holds only unreserved characters and %XX).
pub fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto}
header form{display:inline}header button{background:none;border:1px solid #fff;color:#fff;border-radius:3px;cursor:pointer}
main{padding:1em 1.5em;max-width:75em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;background:#fff;margin:.5em 0}td,th{border:1px solid #d0d5dd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}
.ok{background:#e3f5e6;border:2px solid #2e7d32;padding:.6em 1em;border-radius:4px}
.broken,.refused{background:#fde8e8;border:2px solid #c62828;color:#8e0000;padding:.6em 1em;border-radius:4px}
.note{color:#555;font-size:.9em}
.card{background:#fff;border:1px solid #d0d5dd;border-radius:4px;padding:.8em 1em;margin:.8em 0}
input,select,button{font:inherit;padding:.2em .4em}
.record p{max-width:48em;line-height:1.45}
@media print{header,.noprint{display:none}body{background:#fff}main{padding:0}
.record{font-size:11pt}.card,table{border-color:#000}a{color:#000;text-decoration:none}}
";

/// A whole page: the navigation for the signed-in person (none on the sign-in page).
pub fn page(title: &str, nav: Option<(&str, &str, &str)>, body: &str) -> String {
    let header = match nav {
        Some((person, role, csrf)) => {
            let mut links = vec![];
            if role != "agent" {
                links.push(("/overview", "Overview"));
            }
            links.push(("/agents", "Agents"));
            links.push(("/recordings", "Recordings"));
            links.push(("/selection", "Selection explained"));
            links.push(("/record", "Processing record"));
            if role == "dpo" {
                links.push(("/requests", "Caller requests"));
            }
            let l: String = links.iter().map(|(h, t)| format!("<a href=\"{h}\">{t}</a>")).collect();
            format!(
                "<header><strong>callconsent</strong>{l}<span class=who>{} ({})</span><form method=post action=/signout><input type=hidden name=csrf value=\"{}\"><button>Sign out</button></form></header>",
                esc(person),
                esc(role),
                esc(csrf)
            )
        }
        None => "<header><strong>callconsent</strong></header>".to_string(),
    };
    format!("<!doctype html><html lang=en><head><meta charset=utf-8><title>{} - callconsent</title><style>{CSS}</style></head><body>{header}<main>{body}</main></body></html>", esc(title))
}

/// A bar chart of series per day: `days` on the x axis, one bar per series per day.
pub fn bars(days: &[String], series: &[(&str, &str, Vec<u64>)]) -> String {
    let max = series.iter().flat_map(|s| s.2.iter().copied()).max().unwrap_or(0).max(1);
    let (h, bar, gap) = (140.0, 9.0, 14.0);
    let group = bar * series.len() as f64 + gap;
    let width = 40.0 + group * days.len().max(1) as f64;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" role=img width=\"{width:.0}\" height=\"{}\" viewBox=\"0 0 {width:.0} {}\">", h + 40.0, h + 40.0);
    svg.push_str(&format!("<line x1=30 y1=10 x2=30 y2={} stroke=#999 /><text x=26 y=16 font-size=10 text-anchor=end>{max}</text><text x=26 y={} font-size=10 text-anchor=end>0</text>", h + 10.0, h + 10.0));
    for (d, day) in days.iter().enumerate() {
        let x0 = 36.0 + group * d as f64;
        for (i, (name, color, values)) in series.iter().enumerate() {
            let v = values.get(d).copied().unwrap_or(0);
            let bh = h * v as f64 / max as f64;
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{} {}: {v}</title></rect>",
                x0 + bar * i as f64,
                10.0 + h - bh,
                esc(day),
                esc(name)
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=10>{}</text>",
            x0,
            h + 24.0,
            esc(day.get(5..).unwrap_or(day))
        ));
    }
    svg.push_str("</svg>");
    let legend: String = series.iter().map(|(n, c, _)| format!("<span style=\"display:inline-block;width:.8em;height:.8em;background:{c}\"></span> {} &nbsp; ", esc(n))).collect();
    format!("<div>{svg}<div class=note>{legend}</div></div>")
}

/// Two horizontal bars: the configured share and the measured one, in percent.
pub fn share_bars(configured: u8, measured: Option<f64>) -> String {
    let m = measured.unwrap_or(0.0);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=img width=350 height=46 viewBox=\"0 0 350 46\">\
         <rect x=90 y=4 width=200 height=14 fill=#eef1f5 /><rect x=90 y=4 width=\"{:.1}\" height=14 fill=#1d3557 /><text x=0 y=15 font-size=11>configured</text><text x=294 y=15 font-size=11>{configured} %</text>\
         <rect x=90 y=26 width=200 height=14 fill=#eef1f5 /><rect x=90 y=26 width=\"{:.1}\" height=14 fill=#2a9d8f /><text x=0 y=37 font-size=11>measured</text><text x=294 y=37 font-size=11>{}</text></svg>",
        2.0 * f64::from(configured.min(100)),
        2.0 * m.clamp(0.0, 100.0),
        measured.map(|m| format!("{m:.0} %")).unwrap_or_else(|| "no call".into())
    )
}

/// A recording's timeline: its length, the paused spans ("2000-3500,5000-end") shaded.
pub fn timeline(duration_ms: u64, spans: &str) -> String {
    let total = duration_ms.max(1) as f64;
    let w = 600.0;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" role=img aria-label=timeline width=620 height=44 viewBox=\"0 0 620 44\"><rect x=10 y=8 width={w} height=18 fill=#2a9d8f />");
    for (a, b) in pause_spans(spans, duration_ms) {
        svg.push_str(&format!(
            "<rect class=paused x=\"{:.1}\" y=8 width=\"{:.1}\" height=18 fill=#9aa5b1><title>paused {a}-{b} ms</title></rect>",
            10.0 + w * a as f64 / total,
            (w * (b.saturating_sub(a)) as f64 / total).max(1.0)
        ));
    }
    svg.push_str(&format!("<text x=10 y=40 font-size=10>0 s</text><text x=610 y=40 font-size=10 text-anchor=end>{:.1} s</text></svg>", duration_ms as f64 / 1000.0));
    svg
}

/// The paused spans of a `pause_spans_ms` field, in ms, clamped to the recording.
pub fn pause_spans(spans: &str, duration_ms: u64) -> Vec<(u64, u64)> {
    spans
        .split(',')
        .filter_map(|s| {
            let (a, b) = s.trim().split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b == "end" { duration_ms } else { b.parse().ok()? };
            Some((a.min(duration_ms), b.min(duration_ms).max(a.min(duration_ms))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_neutralises_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("a\" onload=\"x"), "a&quot; onload=&quot;x");
        assert_eq!(esc("Tom & Jerry"), "Tom &amp; Jerry");
        assert_eq!(esc("plain é"), "plain é");
    }

    #[test]
    fn url_escapes_everything_but_unreserved() {
        assert_eq!(url("Local/agent@test"), "Local%2Fagent%40test");
        assert_eq!(url("a b&c=\"d\""), "a%20b%26c%3D%22d%22");
    }

    #[test]
    fn pause_spans_parse_and_clamp() {
        assert_eq!(pause_spans("2000-3500,5000-end", 8000), vec![(2000, 3500), (5000, 8000)]);
        assert_eq!(pause_spans("", 8000), vec![]);
        assert_eq!(pause_spans("7000-9000,x-1", 8000), vec![(7000, 8000)]);
        assert_eq!(timeline(8000, "2000-3500").matches("class=paused").count(), 1);
    }

    #[test]
    fn charts_escape_their_labels() {
        let svg = bars(&["2026-12-01".into()], &[("<b>", "#000", vec![3])]);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
        assert!(share_bars(20, Some(25.0)).contains("25 %"));
    }
}
