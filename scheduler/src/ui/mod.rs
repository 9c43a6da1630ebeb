//! The operator dashboard, served by the scheduler under `/ui`.
//!
//! Four panels answer the questions an operator of offpeak asks:
//!
//! - **Tonight** ([`data::tonight`]): held jobs by the UTC hour in which
//!   they become due over the next 24 hours, stacked by model, as 02:00
//!   sweeps round the world.
//! - **Now** ([`data::now`]): jobs by state, the batch queue's depth and
//!   workers, throughput and the provider error rate over the last hour.
//! - **Spend** ([`data::spend`]): credits per model per day for the last 30
//!   days, and what the off-peak price and the cache saved.
//! - **Jobs** ([`data::jobs`], [`data::job`], [`actions`]): every tenant's
//!   jobs, searchable and paginated; a job's timeline, input, result and
//!   error; retry (dead or failed) and cancel (held or queued).
//!
//! The page is one HTML shell with hand-written JavaScript and CSS
//! (`assets/`), compiled into the binary with `include_str!`: it needs no
//! build step and no network access beyond this server, and draws its
//! charts as inline SVG. It polls the JSON endpoints under `/ui/api/` every
//! few seconds while visible. Who may use it is [`auth`]'s business; with no
//! `OFFPEAK_OPERATOR_TOKEN` every route answers 403 `ui_disabled`.
//!
//! None of this is part of the tenant API (`/v1`), nor of its OpenAPI
//! document. The router is merged beside the API's in
//! [`crate::startup::serve`].

pub mod actions;
pub mod auth;
pub mod data;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::AppState;
use auth::Presented;

/// How often the page refreshes the panel on screen.
pub const POLL_INTERVAL_MS: u64 = 5_000;
/// Largest request body a `/ui` route accepts (a login form, a retry).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const DISABLED_HTML: &str = include_str!("assets/disabled.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Everything the page loads comes from this server; no inline script or
/// style, no frames, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, to be merged beside the API's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/api/meta", get(data::meta))
        .route("/ui/api/tonight", get(data::tonight))
        .route("/ui/api/now", get(data::now))
        .route("/ui/api/spend", get(data::spend))
        .route("/ui/api/jobs", get(data::jobs))
        .route("/ui/api/webhooks", get(data::webhooks))
        .route("/ui/api/jobs/{id}", get(data::job))
        .route("/ui/api/jobs/{id}/retry", post(actions::retry))
        .route("/ui/api/jobs/{id}/cancel", post(actions::cancel))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_enabled))
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Without an operator token the dashboard grants no access at all: pages
/// say how to enable it, JSON calls get 403 `ui_disabled`.
async fn require_enabled(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.config.operator_token.is_some() {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/ui/api/") {
        auth::disabled().into_response()
    } else {
        (StatusCode::FORBIDDEN, Html(DISABLED_HTML)).into_response()
    }
}

/// Headers every `/ui` response carries: the CSP above, no sniffing, no
/// framing, no referrer; nothing is cached but the assets (revalidated).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Whether the request carries a valid session or bearer token.
fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .config
        .operator_token
        .as_ref()
        .is_some_and(|t| auth::check(headers, t, state.clock.now()) == Presented::Valid)
}

/// `GET /ui/`: the page, or the login form first.
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers) {
        Html(INDEX_HTML).into_response()
    } else {
        Redirect::to("/ui/login").into_response()
    }
}

/// The login page, with an optional message (a fixed text of ours, never
/// user input, so it needs no escaping).
fn login_html(status: StatusCode, message: &str) -> Response {
    (status, Html(LOGIN_HTML.replace("{{message}}", message))).into_response()
}

/// `GET /ui/login`.
async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers) {
        return Redirect::to("/ui/").into_response();
    }
    login_html(StatusCode::OK, "")
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /ui/login` (form field `token`): sets the session cookie and goes
/// to the dashboard (303), or shows the form again with 401.
async fn login(State(state): State<AppState>, headers: HeaderMap, form: Result<Form<LoginForm>, FormRejection>) -> Response {
    let Some(token) = state.config.operator_token.as_ref() else {
        return auth::disabled().into_response();
    };
    let Ok(Form(form)) = form else {
        return login_html(StatusCode::BAD_REQUEST, "Send the operator token in the form field <code>token</code>.");
    };
    if !token.matches(&form.token) {
        tracing::warn!("dashboard login with a wrong operator token");
        return login_html(StatusCode::UNAUTHORIZED, "That is not the operator token.");
    }
    let secure = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = auth::session_cookie(token, state.clock.now(), secure);
    let mut resp = Redirect::to("/ui/").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        // The value is ASCII we built; this cannot happen, but if it did the
        // operator should see why rather than loop back to the form.
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `POST /ui/logout`: ends the session (a cross-site logout is harmless,
/// and the cookie is not sent cross-site anyway).
async fn logout() -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /ui/assets/{name}`: the script and the style sheet. They hold no
/// data, so the login page may use them too.
async fn asset(Path(name): Path<String>) -> Response {
    let (content_type, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return ApiError::not_found("asset").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
