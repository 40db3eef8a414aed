//! The admin listener (`[admin] listen`): `GET /metrics` (Prometheus text), `GET /healthz`
//! (`ok`, or `draining` with 503 once SIGTERM came),
//! `GET /policy` (what policy is served), `POST /policy/reload` (hot swap now), and the
//! sessions (`sessions`: `GET /sessions`, `GET /sessions/{id}`).
//!
//! Reads what the layers publish (policy host, stats, session registry); changes nothing
//! but the served policy.

mod sessions;

use crate::policy::{PolicyHost, Reloaded, reload};
use crate::session::registry::Registry;
use crate::session::stats::SessionStats;
use crate::smtp::Destinations;
use crate::store::Store;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

/// What `GET /metrics` shows besides the policy's: the sessions' figures, the outgoing
/// SMTP connections' and the store's.
pub type Metrics = (Arc<SessionStats>, Arc<Destinations>, Arc<Store>);

/// Whether the gateway serves or drains (SIGTERM): `GET /healthz` says so, for the load
/// balancer to stop sending new work here.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Admin {
    policy: Arc<PolicyHost>,
    metrics: Metrics,
    sessions: Arc<Registry>,
    health: Arc<Health>,
}

pub fn router(
    policy: Arc<PolicyHost>,
    metrics: Metrics,
    sessions: Arc<Registry>,
    health: Arc<Health>,
) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/policy", get(policy_info))
        .route("/policy/reload", post(policy_reload))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::one))
        .with_state(Admin {
            policy,
            metrics,
            sessions,
            health,
        })
}

/// Serves the admin API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// `ok` (200) while serving, `draining` (503) once SIGTERM came.
async fn healthz(State(admin): State<Admin>) -> Response {
    if admin.health.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    admin.policy.render_metrics(&mut out);
    admin.metrics.0.render_metrics(&mut out);
    admin.metrics.1.render_metrics(&mut out);
    admin.metrics.2.render_metrics(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn policy_info(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let p = admin.policy.current();
    let loaded = p.loaded_at().duration_since(UNIX_EPOCH).unwrap_or_default();
    Json(json!({
        "name": p.info().name,
        "version": p.info().version,
        "sha256": p.sha256_hex(),
        "world": format!("cpm:iwf-policy/policy@{}", crate::policy::world::WORLD_VERSION),
        "world_version": crate::policy::world::WORLD_VERSION,
        "source": p.source(),
        "loaded_at": humantime_rfc3339(loaded.as_secs()),
        "loaded_at_unix_ms": loaded.as_millis() as u64,
    }))
}

async fn policy_reload(State(admin): State<Admin>) -> Response {
    match reload::reload_in_background(&admin.policy).await {
        Ok(Reloaded::Swapped { sha256 }) => {
            Json(json!({ "result": "swapped", "sha256": sha256 })).into_response()
        }
        Ok(Reloaded::Unchanged) => {
            Json(json!({ "result": "unchanged", "sha256": admin.policy.current().sha256_hex() }))
                .into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "result": "refused",
                "error": e.to_string(),
                "serving": admin.policy.current().sha256_hex(),
            })),
        )
            .into_response(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time in milliseconds.
fn rfc3339_ms(ms: u64) -> String {
    let seconds = humantime_rfc3339(ms / 1000);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), ms % 1000)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, H. Hinnant's algorithm).
fn humantime_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::humantime_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::humantime_rfc3339(1_795_650_000),
            "2026-11-25T23:40:00Z"
        );
        assert_eq!(
            super::humantime_rfc3339(951_782_400),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            super::rfc3339_ms(1_795_650_000_042),
            "2026-11-25T23:40:00.042Z"
        );
    }
}
