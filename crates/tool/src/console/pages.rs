//! The console's pages. Every handler reads the live configuration, finds the signed-in person
//! and their role, and checks ownership on the object the URL names (a recording by its index
//! id, an agent, a call) before showing anything; every POST checks the session's CSRF token.
// A refusal is the page sent instead: the error path of these functions is a Response.
#![allow(clippy::result_large_err)]
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use callconsent_core::access::{decide, Want};
use callconsent_core::audit::AccessEvent;
use callconsent_core::config::Role;
use callconsent_runtime::access::{self as racc, Recording};

use super::html::{esc, page, url};
use super::{auth, stats, App};
use crate::access::{self, Ctx, Denied, Released};

type Params = HashMap<String, String>;

pub fn router(app: Arc<App>) -> Router {
    let tls = app.tls;
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/overview", get(overview))
        .route("/agents", get(agents))
        .route("/agent", get(agent))
        .route("/recordings", get(recordings))
        .route("/recordings/{id}", get(recording))
        .route("/recordings/{id}/listen", post(listen))
        .route("/play/{token}", get(play))
        .route("/selection", get(selection))
        .route("/record", get(record))
        .route("/requests", get(requests).post(request_action))
        .with_state(app)
        // Under TLS the browser is told to come back over HTTPS only (issue 24).
        .layer(axum::middleware::map_response(move |mut r: Response| async move {
            if tls {
                r.headers_mut().insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                );
            }
            r
        }))
}

/// The signed-in person, as the configuration lists them now.
struct Me {
    sid: String,
    person: String,
    role: Role,
    agents: Vec<String>,
    csrf: String,
}

impl Me {
    fn nav(&self) -> Option<(&str, &str, &str)> {
        Some((&self.person, self.role.as_str(), &self.csrf))
    }
    /// Whether this person may see what concerns `agent` (None: a call with no agent).
    fn sees(&self, agent: Option<&str>) -> bool {
        match (self.role, agent) {
            (Role::Dpo, _) => true,
            (_, Some(a)) => self.agents.iter().any(|x| x == a),
            (_, None) => false,
        }
    }
    fn page(&self, title: &str, body: &str) -> Response {
        html(StatusCode::OK, page(title, self.nav(), body))
    }
    fn refuse(&self, why: &str) -> Response {
        html(
            StatusCode::FORBIDDEN,
            page(
                "Refused",
                self.nav(),
                &format!("<h1>Refused</h1><p class=refused id=reason>{}</p>", esc(why)),
            ),
        )
    }
    fn error(&self, why: &str) -> Response {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Error", self.nav(), &format!("<h1>Error</h1><p class=broken>{}</p>", esc(why))),
        )
    }
    fn form(&self) -> String {
        format!("<input type=hidden name=csrf value=\"{}\">", esc(&self.csrf))
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(h);
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; media-src 'self'; form-action 'self'; frame-ancestors 'none'"));
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

fn set_cookie(app: &App, r: &mut Response, name: &str, value: &str, max_age: u64) {
    let secure = if app.tls { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The live configuration and the signed-in person, or the response to send instead.
fn me(app: &App, headers: &HeaderMap) -> Result<(Ctx, Me), Response> {
    let ctx = access::open(&app.place, false).map_err(|e| {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Error", None, &format!("<p class=broken>{}</p>", esc(&e))),
        )
    })?;
    let idle = Duration::from_secs(ctx.cfg.console.session_minutes.max(1) * 60);
    let sid = cookie(headers, "cc_session").ok_or_else(|| redirect("/signin"))?;
    let s =
        app.sessions.get(&sid, idle, auth::SESSION_MAX_AGE).ok_or_else(|| redirect("/signin"))?;
    // Gone from [access], or its password changed since the sign-in: the session ends.
    let Some(p) =
        ctx.cfg.access.person(&s.person).filter(|p| {
            p.password_hash.as_deref().is_some_and(|h| auth::same(h, &s.password_hash))
        })
    else {
        app.sessions.close(&sid);
        return Err(redirect("/signin"));
    };
    let me =
        Me { sid, person: p.name.clone(), role: p.role, agents: p.agents.clone(), csrf: s.csrf };
    Ok((ctx, me))
}

/// A POST: the session's CSRF token must be in the form.
fn me_post(app: &App, headers: &HeaderMap, form: &Params) -> Result<(Ctx, Me), Response> {
    let (ctx, me) = me(app, headers)?;
    if !form.get("csrf").is_some_and(|t| auth::same(t, &me.csrf)) {
        return Err(
            me.refuse("the form's CSRF token is missing or wrong: reload the page and try again")
        );
    }
    Ok((ctx, me))
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match me(&app, &headers) {
        Ok((_, me)) if me.role == Role::Agent => redirect("/agents"),
        Ok(_) => redirect("/overview"),
        Err(r) => r,
    }
}

fn signin_form(app: &App, msg: &str, status: StatusCode) -> Response {
    let pre = auth::token();
    let body = format!(
        "<h1>Sign in</h1>{msg}<form method=post action=/signin class=card><input type=hidden name=csrf value=\"{pre}\">\
         <p><label>Name <input name=name autocomplete=username required autofocus></label></p>\
         <p><label>Password <input name=password type=password autocomplete=current-password required></label></p>\
         <p><button id=signin>Sign in</button></p></form>\
         <p class=note>For the people of the [access] section with a password line (callconsent console password NAME).</p>"
    );
    let mut r = html(status, page("Sign in", None, &body));
    set_cookie(app, &mut r, "cc_pre", &pre, 600);
    r
}

async fn signin_page(State(app): State<Arc<App>>) -> Response {
    signin_form(&app, "", StatusCode::OK)
}

async fn signin(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = match access::open(&app.place, false) {
        Ok(c) => c,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page("Error", None, &format!("<p class=broken>{}</p>", esc(&e))),
            )
        }
    };
    let pre = cookie(&headers, "cc_pre").unwrap_or_default();
    if pre.is_empty() || !f.get("csrf").is_some_and(|t| auth::same(t, &pre)) {
        return signin_form(
            &app,
            "<p class=refused>The sign-in form expired (CSRF token): try again.</p>",
            StatusCode::FORBIDDEN,
        );
    }
    let name = f.get("name").map(|s| s.trim().to_string()).unwrap_or_default();
    let pw = f.get("password").cloned().unwrap_or_default();
    let c = &ctx.cfg.console;
    let lockout = Duration::from_secs(c.lockout_seconds);
    // Checked and counted in one step (issue 24): attempts sent at once for one name are refused
    // once `max_failed_signins` of them are failed or being checked.
    if let Err(auth::Refused::Locked(left)) =
        app.sessions.begin(&name, c.max_failed_signins, lockout)
    {
        eprintln!("callconsent: console: sign-in of {name:?} refused: locked out");
        return signin_form(&app, &format!("<p class=refused id=reason>Too many failed sign-ins for this name: locked for {left} more second(s).</p>"), StatusCode::FORBIDDEN);
    }
    // An unknown name is checked against a hash no password matches: the same time, the same
    // answer. At most VERIFYING checks run at once (each holds argon2's 19 MiB); others wait.
    let known = ctx.cfg.access.person(&name).and_then(|p| p.password_hash.clone());
    let is_known = known.is_some();
    let h = known.clone().unwrap_or_else(|| app.dummy_hash.clone());
    let ok = match app.verifying.clone().acquire_owned().await {
        Ok(permit) => tokio::task::spawn_blocking(move || {
            let ok = auth::verify(&pw, &h);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false),
        Err(_) => false,
    } && is_known;
    if !ok {
        let locked = app.sessions.failed(&name, c.max_failed_signins, lockout);
        eprintln!(
            "callconsent: console: failed sign-in for {name:?}{}",
            if locked { " (now locked out)" } else { "" }
        );
        let msg = if locked {
            format!("<p class=refused id=reason>Wrong name or password. Too many failed sign-ins: locked for {} second(s).</p>", c.lockout_seconds)
        } else {
            "<p class=refused id=reason>Wrong name or password.</p>".to_string()
        };
        return signin_form(&app, &msg, StatusCode::UNAUTHORIZED);
    }
    app.sessions.succeeded(&name);
    let (sid, _) = app.sessions.open(&name, known.as_deref().unwrap_or(""));
    eprintln!("callconsent: console: {name} signed in");
    let mut r = redirect("/");
    set_cookie(&app, &mut r, "cc_session", &sid, c.session_minutes.max(1) * 60);
    set_cookie(&app, &mut r, "cc_pre", "", 0);
    r
}

async fn signout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let (_, me) = match me_post(&app, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.sessions.close(&me.sid);
    let mut r = redirect("/signin");
    set_cookie(&app, &mut r, "cc_session", "", 0);
    r
}

fn secret(app: &App) -> Option<Vec<u8>> {
    std::fs::read(&app.place.secret).ok()
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if me.role == Role::Agent {
        return me.refuse(
            "the overview is the DPO's and the coaches'; an agent sees their own page (Agents)",
        );
    }
    let lines = match ctx.store.audit_lines() {
        Ok(l) => l,
        Err(e) => return me.error(&e),
    };
    let secret = secret(&app);
    let mut body = String::from("<h1>Overview</h1>");
    // The chains first: a broken one is the first thing to see.
    for (log, what) in [(&ctx.store.audit_log, "audit log"), (&ctx.store.access_log, "access log")]
    {
        let c = stats::chain(log, secret.as_deref(), what);
        let at =
            c.at.as_ref().map(|a| format!(" <strong>At {}</strong>.", esc(a))).unwrap_or_default();
        body.push_str(&format!(
            "<p class={} id=\"chain-{}\">{}{at}</p>",
            if c.ok { "ok" } else { "broken" },
            what.replace(' ', "-"),
            esc(&c.text)
        ));
    }
    match stats::last_checkpoint(&lines) {
        Some(l) => body.push_str(&format!(
            "<p class=note>Last checkpoint: {} ({}), {}:{}. Anchors published with it: the Asterisk log's \"audit head\" lines and the AMI event CallConsentAudit; check them with callconsent audit verify --anchor HEAD.</p>",
            esc(l.value["ts"].as_str().unwrap_or("")),
            esc(l.value["reason"].as_str().unwrap_or("checkpoint")),
            esc(&l.file),
            l.number
        )),
        None => body.push_str("<p class=note>No checkpoint line yet.</p>"),
    }
    let days = stats::per_day(&lines);
    for (name, p) in &ctx.cfg.profiles {
        let d = days.get(name).cloned().unwrap_or_default();
        let total = d.values().fold(stats::Day::default(), |mut a, x| {
            a.calls += x.calls;
            a.recorded += x.recorded;
            a.selected += x.selected;
            a.optout_notice += x.optout_notice;
            a.optout_call += x.optout_call;
            a.exempt += x.exempt;
            a.pauses += x.pauses;
            a.deletes += x.deletes;
            a
        });
        let measured =
            (total.calls > 0).then(|| 100.0 * total.recorded as f64 / total.calls as f64);
        let keys: Vec<String> = d.keys().rev().take(14).rev().cloned().collect();
        let col = |f: fn(&stats::Day) -> u64| {
            keys.iter().map(|k| d.get(k).map(f).unwrap_or(0)).collect::<Vec<u64>>()
        };
        let chart = super::html::bars(
            &keys,
            &[
                ("calls", "#9aa5b1", col(|x| x.calls)),
                ("recorded", "#1d3557", col(|x| x.recorded)),
                ("opt-outs during the notice", "#e76f51", col(|x| x.optout_notice)),
                ("opt-outs mid-call", "#f4a261", col(|x| x.optout_call)),
                ("exemptions", "#2a9d8f", col(|x| x.exempt)),
                ("pauses", "#8d99ae", col(|x| x.pauses)),
                ("deletes by the agent", "#6a4c93", col(|x| x.deletes)),
            ],
        );
        let rows: String = keys
            .iter()
            .map(|k| {
                let x = &d[k];
                format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(k), x.calls, x.recorded, x.optout_notice, x.optout_call, x.exempt, x.pauses, x.deletes)
            })
            .collect();
        body.push_str(&format!(
            "<section class=card id=\"profile-{}\"><h2>Profile {}</h2>{}<p>Configured share <strong>{} %</strong>; measured: {} of {} call(s) recorded{}. Opt-outs: {} during the notice, {} mid-call; {} exemption(s); {} pause(s); {} delete(s) by the agent.</p>{chart}\
             <table><tr><th>Day</th><th>Calls</th><th>Recorded</th><th>Opt-outs (notice)</th><th>Opt-outs (mid-call)</th><th>Exemptions</th><th>Pauses</th><th>Deletes</th></tr>{rows}</table></section>",
            esc(name),
            esc(name),
            super::html::share_bars(p.record_share, measured),
            p.record_share,
            total.recorded,
            total.calls,
            measured.map(|m| format!(" ({m:.0} %)")).unwrap_or_default(),
            total.optout_notice,
            total.optout_call,
            total.exempt,
            total.pauses,
            total.deletes
        ));
    }
    me.page("Overview", &body)
}

/// The agents this person may see: every agent for the DPO, the team for a coach, their own
/// line for an agent.
fn visible_agents(ctx: &Ctx, me: &Me, lines: &[racc::Line]) -> Vec<String> {
    let mut all: std::collections::BTreeSet<String> =
        ctx.cfg.access.people.iter().flat_map(|p| p.agents.iter().cloned()).collect();
    all.extend(racc::recordings(lines).into_iter().filter_map(|r| r.agent));
    all.into_iter().filter(|a| me.sees(Some(a))).collect()
}

async fn agents(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if me.role == Role::Agent {
        return match me.agents.first() {
            Some(a) => redirect(&format!("/agent?name={}", url(a))),
            None => me.refuse("no agent line is listed for you in [access]"),
        };
    }
    let (lines, acc) = match (ctx.store.audit_lines(), ctx.store.access_lines()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return me.error(&e),
    };
    let key = racc::current_period(&ctx.cfg);
    let seen = visible_agents(&ctx, &me, &lines);
    let a = &ctx.cfg.access;
    let rows: String = access::listening(&ctx.cfg, &lines, &acc, &key)
        .into_iter()
        .filter(|r| seen.contains(&r.agent))
        .map(|r| {
            let caps: String = stats::caps(&ctx.cfg, &lines, &r.agent)
                .iter()
                .map(|(p, n, max, k)| format!("{}: {n}{} ({})<br>", esc(p), if *max > 0 { format!(" of {max}") } else { " (no cap)".into() }, esc(k)))
                .collect();
            format!(
                "<tr class=agent><td><a href=\"/agent?name={}\">{}</a></td><td>{caps}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                url(&r.agent),
                esc(&r.agent),
                r.listens,
                r.refused,
                esc(r.state)
            )
        })
        .collect();
    let bound = |n: u64| if n == 0 { "none".to_string() } else { n.to_string() };
    let body = format!(
        "<h1>Agents</h1><p>Listening this {} ({}): min_listens_per_agent {}, max_listens_per_agent {}.</p>\
         <table id=agents><tr><th>Agent</th><th>Recordings against the cap</th><th>Listens</th><th>Refused</th><th>Bounds</th></tr>{rows}</table>",
        a.listen_period.as_str(),
        esc(&key),
        bound(a.min_listens_per_agent),
        bound(a.max_listens_per_agent)
    );
    me.page("Agents", &body)
}

async fn agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = q.get("name").cloned().unwrap_or_default();
    if !me.sees(Some(&name)) {
        return me.refuse(&match me.role {
            Role::Agent => format!("the page of {name}: an agent sees only their own page (R8)"),
            _ => format!(
                "{name} is not in {}'s team ({}): a coach sees only their team (R11)",
                me.person,
                me.agents.join(", ")
            ),
        });
    }
    let (lines, acc) = match (ctx.store.audit_lines(), ctx.store.access_lines()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return me.error(&e),
    };
    let key = racc::current_period(&ctx.cfg);
    let row = access::listening(&ctx.cfg, &lines, &acc, &key).into_iter().find(|r| r.agent == name);
    let caps: String = stats::caps(&ctx.cfg, &lines, &name)
        .iter()
        .map(|(p, n, max, k)| {
            format!(
                "<li>Profile {}: {n} recording(s) this period ({}){}</li>",
                esc(p),
                esc(k),
                if *max > 0 { format!(", cap {max}") } else { ", no cap".into() }
            )
        })
        .collect();
    let recs: String = racc::recordings(&lines)
        .iter()
        .rev()
        .filter(|r| r.agent.as_deref() == Some(name.as_str()))
        .map(rec_row)
        .collect();
    let accesses: String = acc
        .iter()
        .rev()
        .filter(|l| l.value["agent"].as_str() == Some(name.as_str()))
        .map(|l| {
            let v = &l.value;
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(v["ts"].as_str().unwrap_or("")),
                esc(v["event"].as_str().unwrap_or("")),
                esc(v["person"].as_str().unwrap_or("")),
                esc(v["role"].as_str().unwrap_or("")),
                esc(v["purpose"].as_str().unwrap_or("")),
                esc(v["reason"].as_str().unwrap_or(""))
            )
        })
        .collect();
    let a = &ctx.cfg.access;
    let body = format!(
        "<h1>Agent {}</h1><p>What is recorded about this agent (R8), from the audit and access logs.</p>\
         <h2>Recordings against the cap</h2><ul>{caps}</ul>\
         <h2>Listening this {} ({})</h2><p id=listens>{} listen(s) of this agent's calls by others, {} refused: {} (min {}, max {}).</p>\
         <h2>Recordings</h2><table id=recordings>{}{recs}</table>\
         <h2>Who listened</h2><table id=accesses><tr><th>When</th><th>What</th><th>Who</th><th>Role</th><th>Purpose</th><th>Reason</th></tr>{accesses}</table>",
        esc(&name),
        a.listen_period.as_str(),
        esc(&key),
        row.as_ref().map(|r| r.listens).unwrap_or(0),
        row.as_ref().map(|r| r.refused).unwrap_or(0),
        esc(row.as_ref().map(|r| r.state).unwrap_or("")),
        a.min_listens_per_agent,
        a.max_listens_per_agent,
        REC_HEAD
    );
    me.page(&format!("Agent {name}"), &body)
}

const REC_HEAD: &str = "<tr><th>Kept</th><th>Agent</th><th>Profile</th><th>Length</th><th>Pauses</th><th>State</th><th>Call</th></tr>";

/// A recording's id in URLs: the start of the hash of its recording_kept line (never a path).
fn rec_id(r: &Recording) -> String {
    r.kept_line.chars().take(16).collect()
}

fn rec_row(r: &Recording) -> String {
    let state = match (&r.removed_by, r.present().is_empty()) {
        (Some(by), _) => esc(by),
        (None, true) => "not on disk".into(),
        (None, false) => "kept".into(),
    };
    format!(
        "<tr class=rec><td><a href=\"/recordings/{}\">{}</a></td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{state}</td><td><a href=\"/selection?call={}\">{}</a></td></tr>",
        rec_id(r),
        esc(&r.kept_at),
        esc(r.agent.as_deref().unwrap_or("none")),
        esc(&r.profile),
        r.duration_ms as f64 / 1000.0,
        if r.pause_spans_ms.is_empty() { "none".to_string() } else { esc(&r.pause_spans_ms) },
        url(&r.call),
        esc(&r.call)
    )
}

async fn recordings(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lines = match ctx.store.audit_lines() {
        Ok(l) => l,
        Err(e) => return me.error(&e),
    };
    let rows: String = racc::recordings(&lines)
        .iter()
        .rev()
        .filter(|r| me.sees(r.agent.as_deref()))
        .map(rec_row)
        .collect();
    let scope = match me.role {
        Role::Dpo => "every recording".to_string(),
        Role::Coach => format!("the recordings of your team ({})", me.agents.join(", ")),
        Role::Agent => "your own calls".to_string(),
    };
    me.page(
        "Recordings",
        &format!(
            "<h1>Recordings</h1><p>Shown: {}.</p><table id=recordings>{REC_HEAD}{rows}</table>",
            esc(&scope)
        ),
    )
}

/// The recording of this id, if this person may reach it (the core's rules, before the bound).
fn reach(ctx: &Ctx, me: &Me, id: &str) -> Result<Recording, Response> {
    let lines = ctx.store.audit_lines().map_err(|e| me.error(&e))?;
    let Some(rec) = racc::recordings(&lines).into_iter().rev().find(|r| rec_id(r) == id) else {
        return Err(html(
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                me.nav(),
                "<h1>Not found</h1><p>No recording of the audit log has this id.</p>",
            ),
        ));
    };
    // Ownership only here (the bound is checked, and a refusal logged, when one asks to listen).
    decide(&ctx.cfg.access, &me.person, Want::Listen, rec.agent.as_deref(), 0)
        .map_err(|why| me.refuse(&why))?;
    Ok(rec)
}

async fn recording(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let rec = match reach(&ctx, &me, &id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut body = recording_head(&rec);
    match (&rec.removed_by, rec.present().is_empty()) {
        (Some(by), _) => body.push_str(&format!("<p>Gone: {}.</p>", esc(by))),
        (None, true) => body.push_str("<p>Not on disk.</p>"),
        (None, false) => body.push_str(&format!(
            "<form method=post action=\"/recordings/{}/listen\" class=card>{}<p><label>Purpose of this listen (written to the access log) <input name=purpose id=purpose required size=40></label></p>\
             <p><button id=listen>Listen</button></p><p class=note>Every listen is written to the access log before any audio is released, and counts against the agent's listening bound.</p></form>",
            esc(&id),
            me.form()
        )),
    }
    me.page("Recording", &body)
}

fn recording_head(rec: &Recording) -> String {
    format!(
        "<h1>Recording of call {}</h1><p>Agent {}, profile {}, kept {}, {:.1} s, paused spans: {}. <a href=\"/selection?call={}\">Why was it recorded?</a></p>{}",
        esc(&rec.call),
        esc(rec.agent.as_deref().unwrap_or("none")),
        esc(&rec.profile),
        esc(&rec.kept_at),
        rec.duration_ms as f64 / 1000.0,
        if rec.pause_spans_ms.is_empty() { "none".to_string() } else { esc(&rec.pause_spans_ms) },
        url(&rec.call),
        super::html::timeline(rec.duration_ms, &rec.pause_spans_ms)
    )
}

async fn listen(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Params>,
) -> Response {
    let (ctx, me) = match me_post(&app, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lines = match ctx.store.audit_lines() {
        Ok(l) => l,
        Err(e) => return me.error(&e),
    };
    let Some(rec) = racc::recordings(&lines).into_iter().rev().find(|r| rec_id(r) == id) else {
        return html(StatusCode::NOT_FOUND, page("Not found", me.nav(), "<h1>Not found</h1>"));
    };
    let purpose = f.get("purpose").map(|p| p.trim().to_string()).unwrap_or_default();
    if purpose.is_empty() {
        return me.refuse("say why you listen (the purpose is written to the access log)");
    }
    let path = match access::file_of(&rec) {
        Ok(p) => p,
        Err(e) => return me.error(&e),
    };
    let mut extra = serde_json::Map::new();
    extra.insert("via".into(), serde_json::json!("console"));
    // The same code as `callconsent listen`: the rules (a refusal is logged), the archive, the
    // access line, then the audio.
    let Released { bytes, duration_ms, line, .. } = match access::access_audio(
        &ctx,
        &rec,
        &path,
        &me.person,
        &purpose,
        AccessEvent::Listen,
        app.identity.as_deref(),
        extra,
    ) {
        Ok(r) => r,
        Err(Denied::Refused(why)) => return me.refuse(&why),
        Err(Denied::Failed(e)) => return me.error(&e),
    };
    let token = auth::token();
    if let Ok(mut m) = app.plays.lock() {
        m.retain(|_, (_, _, until)| *until > Instant::now());
        m.insert(
            token.clone(),
            (me.sid.clone(), Arc::new(bytes), Instant::now() + Duration::from_secs(600)),
        );
    }
    let body = format!(
        "{}<p class=ok id=logged>Listen logged (access line {}): purpose \"{}\", {:.1} s.</p><audio id=player controls autoplay preload=auto src=\"/play/{token}\"></audio>",
        recording_head(&rec),
        esc(&line[..line.len().min(16)]),
        esc(&purpose),
        duration_ms as f64 / 1000.0
    );
    me.page("Listening", &body)
}

async fn play(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let (_, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let bytes = app.plays.lock().ok().and_then(|m| {
        m.get(&token)
            .filter(|(sid, _, until)| *sid == me.sid && *until > Instant::now())
            .map(|(_, b, _)| b.clone())
    });
    let Some(bytes) = bytes else {
        return me.refuse("this audio link is not yours, or it expired: ask to listen again (each listen is logged)");
    };
    let mut r = Response::new(Body::from(bytes.to_vec()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    secure_headers(h);
    r
}

async fn selection(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lines = match ctx.store.audit_lines() {
        Ok(l) => l,
        Err(e) => return me.error(&e),
    };
    let mut body = String::from("<h1>Selection explained (R5)</h1><p>For each call: the draw replayed from the installation secret and the call id (nothing about the caller or the agent), and the agent checks (exemption, cap) that led to recording or not.</p>");
    if let Some(call) = q.get("call").filter(|c| !c.is_empty()) {
        match stats::explain(&ctx.cfg, &lines, secret(&app).as_deref(), call) {
            Some(e) if me.sees(e.agent.as_deref()) => {
                let steps: String = e
                    .steps
                    .iter()
                    .map(|(at, t)| {
                        format!("<li>{} <span class=note>({})</span></li>", esc(t), esc(at))
                    })
                    .collect();
                body.push_str(&format!(
                    "<section class=card id=explained><h2>Call {}</h2><p>Profile {}, agent {}, outcome: {}.</p><ol>{steps}</ol></section>",
                    esc(&e.call),
                    esc(&e.profile),
                    esc(e.agent.as_deref().unwrap_or("none")),
                    esc(if e.outcome.is_empty() { "in progress or unknown" } else { &e.outcome })
                ));
            }
            Some(e) => {
                return me.refuse(&format!(
                    "the call concerns {}: you may see only {}",
                    e.agent.as_deref().unwrap_or("no agent"),
                    if me.role == Role::Agent { "your own calls" } else { "your team's calls" }
                ))
            }
            None => body.push_str("<p class=refused>No audit line names this call.</p>"),
        }
    }
    body.push_str("<form method=get action=/selection class=noprint><label>Call id <input name=call></label> <button>Explain</button></form><h2>Recent calls</h2><table><tr><th>Call</th><th>Started</th><th>Profile</th><th>Agent</th><th>Outcome</th></tr>");
    for (c, ts, p, a, o) in
        stats::calls(&lines).into_iter().filter(|c| me.sees(c.3.as_deref())).take(100)
    {
        body.push_str(&format!(
            "<tr><td><a href=\"/selection?call={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            url(&c),
            esc(&c),
            esc(&ts),
            esc(&p),
            esc(a.as_deref().unwrap_or("none")),
            esc(&o)
        ));
    }
    body.push_str("</table>");
    me.page("Selection explained", &body)
}

async fn record(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let (ctx, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let fr = q.get("lang").is_some_and(|l| l == "fr");
    let body = super::record::render(&ctx.cfg, fr);
    let mut r = html(
        StatusCode::OK,
        page(if fr { "Registre des traitements" } else { "Processing record" }, me.nav(), &body),
    );
    if fr {
        r.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static("fr"));
    }
    r
}

async fn requests(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, me) = match me(&app, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if me.role != Role::Dpo {
        return me.refuse(&format!(
            "{} is a {}: callers' requests are served by the DPO",
            me.person,
            me.role.as_str()
        ));
    }
    me.page("Caller requests", &request_form(&me, "", ""))
}

fn request_form(me: &Me, number: &str, reference: &str) -> String {
    format!(
        "<h1>Caller requests</h1><p>A caller's rights of access and erasure (GDPR Art. 15, 17, 21): find their recordings by number (any form: 06 12 34 56 78, +33612345678), then export or erase them. Each step is logged with the request's reference.</p>\
         <form method=post action=/requests class=card>{}<input type=hidden name=action value=find>\
         <p><label>Caller's number <input name=number id=number required value=\"{}\"></label></p>\
         <p><label>Request reference <input name=request id=request required value=\"{}\"></label></p><p><button id=find>Find</button></p></form>",
        me.form(),
        esc(number),
        esc(reference)
    )
}

async fn request_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let (_, me) = match me_post(&app, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let number = f.get("number").map(|s| s.trim().to_string()).unwrap_or_default();
    let reference = f.get("request").map(|s| s.trim().to_string()).unwrap_or_default();
    let action = f.get("action").map(String::as_str).unwrap_or("find");
    if number.is_empty() || reference.is_empty() {
        return me.refuse("give the caller's number and the request's reference");
    }
    // The secret is needed to hash the number, as for `callconsent subject`.
    let ctx = match access::open(&app.place, true) {
        Ok(c) => c,
        Err(e) => return me.error(&e),
    };
    let event = if action == "erase" || action == "confirm-erase" {
        AccessEvent::SubjectErase
    } else {
        AccessEvent::SubjectExport
    };
    let mut body = request_form(&me, &number, &reference);
    if action == "find" || action.starts_with("confirm-") {
        // Finding logs nothing (as `subject find`), but only the DPO may.
        if let Err(why) = decide(&ctx.cfg.access, &me.person, Want::SubjectRequest, None, 0) {
            return me.refuse(&why);
        }
        let (normal, hash) = match access::subject_hash(&ctx, &number) {
            Ok(h) => h,
            Err(e) => return me.refuse(&e),
        };
        let lines = match ctx.store.audit_lines() {
            Ok(l) => l,
            Err(e) => return me.error(&e),
        };
        let calls = racc::subject_calls(&lines, &hash);
        let recs: Vec<Recording> =
            racc::recordings(&lines).into_iter().filter(|r| calls.contains(&r.call)).collect();
        let on_disk =
            recs.iter().filter(|r| r.removed_by.is_none() && !r.present().is_empty()).count();
        let rows: String = recs.iter().map(rec_row).collect();
        body.push_str(&format!(
            "<section class=card id=found><h2>Caller {}</h2><p id=summary>{} call(s), {on_disk} recording(s) on disk.</p><table>{REC_HEAD}{rows}</table>",
            esc(&normal),
            calls.len()
        ));
        let hidden = format!("{}<input type=hidden name=number value=\"{}\"><input type=hidden name=request value=\"{}\">", me.form(), esc(&number), esc(&reference));
        match action {
            "confirm-erase" => body.push_str(&format!(
                "<form method=post action=/requests class=refused>{hidden}<input type=hidden name=action value=erase><p>Erase {on_disk} recording(s) of {} call(s) of {} for request {}? The audio is deleted for good; the audit lines stay (they hold no number).</p><p><button id=confirm>Yes, erase</button> <a href=/requests>Cancel</a></p></form>",
                calls.len(),
                esc(&normal),
                esc(&reference)
            )),
            "confirm-export" => body.push_str(&format!(
                "<form method=post action=/requests class=card>{hidden}<input type=hidden name=action value=export><p>Export {on_disk} recording(s) and the audit lines of {} call(s) of {} for request {}, decrypted, into a new directory under {}?</p><p><button id=confirm>Yes, export</button> <a href=/requests>Cancel</a></p></form>",
                calls.len(),
                esc(&normal),
                esc(&reference),
                esc(&app.exports.display().to_string())
            )),
            _ => body.push_str(&format!(
                "<form method=post action=/requests style=display:inline>{hidden}<input type=hidden name=action value=confirm-export><button id=export>Export…</button></form> \
                 <form method=post action=/requests style=display:inline>{hidden}<input type=hidden name=action value=confirm-erase><button id=erase>Erase…</button></form>"
            )),
        }
        body.push_str("</section>");
        return me.page("Caller requests", &body);
    }
    // export / erase: the tool's code, from the decision (a refusal is logged) to the access line.
    let req = match access::request_in(ctx, &number, Some(&me.person), event, &reference) {
        Ok(r) => r,
        Err(e) if e.starts_with("refused: ") => {
            return me.refuse(e.trim_start_matches("refused: "))
        }
        Err(e) => return me.error(&e),
    };
    match action {
        "erase" => match access::erase_subject(&req, &reference) {
            Ok((erased, files)) => body.push_str(&format!(
                "<p class=ok id=done>Caller {}: {} recording(s) of {} call(s) erased ({files} file(s)); a recording_erased line per call in the audit log, with request {}.</p>",
                esc(&req.normal),
                erased.len(),
                req.calls.len(),
                esc(&reference)
            )),
            Err(e) => return me.error(&e),
        },
        "export" => {
            if let Err(e) = std::fs::create_dir_all(&app.exports) {
                return me.error(&format!("{}: {e}", app.exports.display()));
            }
            // The directory's name is ours (time and a random part), never the request's text.
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let dir: PathBuf = app.exports.join(format!("subject-{stamp}-{}", &auth::token()[..8]));
            let shown = dir.display().to_string();
            match access::export_subject(&req, &reference, app.identity.as_deref(), &dir, &shown) {
                Ok((n, l)) => body.push_str(&format!(
                    "<p class=ok id=done>Caller {}: {n} recording(s) and {l} audit line(s) of {} call(s) exported to {} (request {}).</p>",
                    esc(&req.normal),
                    req.calls.len(),
                    esc(&shown),
                    esc(&reference)
                )),
                Err(e) => return me.error(&e),
            }
        }
        _ => return me.refuse("unknown action"),
    }
    me.page("Caller requests", &body)
}
