//! A cluster of its own for each test, on the local NATS and PostgreSQL:
//! a fresh schema and stream prefix, removed when the test ends (even by a
//! panic). Where a service does not answer, the test says why and skips.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nudge_cluster::Settings;

/// Where the services are: `NUDGE_TEST_NATS` and `NUDGE_TEST_POSTGRES`, else
/// the local ones `.ci/run` starts.
pub fn services() -> (String, String) {
    let nats = std::env::var("NUDGE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let pg = std::env::var("NUDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
    (nats, pg)
}

/// A test's own cluster; dropped with the test.
pub struct Trial {
    pub settings: Settings,
}

impl Drop for Trial {
    fn drop(&mut self) {
        let settings = self.settings.clone();
        // Dropped inside the test's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if let Err(e) = rt.block_on(nudge_cluster::init::destroy(&settings)) {
                eprintln!("could not remove the trial cluster: {e}");
            }
        })
        .join();
    }
}

/// A created cluster named after `test`, or None (said on stderr) when the
/// services cannot be reached.
pub async fn trial(test: &str, partitions: u32) -> Option<Trial> {
    static N: AtomicU32 = AtomicU32::new(0);
    let (nats, pg) = services();
    let unique = format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        test
    );
    let mut settings = Settings::new(&nats, &pg);
    settings.schema = unique.to_ascii_lowercase();
    settings.prefix = unique;
    settings.partitions = partitions;
    settings.connections = 2;
    if let Some(why) = unreachable(&settings).await {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    let trial = Trial { settings };
    // JetStream removes an account's stream directory when its last stream
    // is deleted; a stream another test creates at that moment fails to
    // make its directory (error 10049). Once more is enough.
    if let Err(e) = nudge_cluster::init(&trial.settings).await {
        eprintln!("{test}: creating the streams again after: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        nudge_cluster::init(&trial.settings).await.unwrap();
    }
    Some(trial)
}

/// Why the services cannot be reached, if they cannot.
async fn unreachable(settings: &Settings) -> Option<String> {
    let pg = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls),
    )
    .await;
    match pg {
        Err(_) => {
            return Some(format!(
                "PostgreSQL ({}) does not answer",
                settings.postgres
            ));
        }
        Ok(Err(e)) => return Some(format!("PostgreSQL ({}): {e}", settings.postgres)),
        Ok(Ok(_)) => {}
    }
    let nats = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.nats.as_str()),
    )
    .await;
    match nats {
        Err(_) => Some(format!("NATS ({}) does not answer", settings.nats)),
        Ok(Err(e)) => Some(format!("NATS ({}): {e}", settings.nats)),
        Ok(Ok(_)) => None,
    }
}

/// A PostgreSQL connection for looking at the trial's tables.
pub async fn postgres(settings: &Settings) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A call line as `nudge serve` hands it on.
pub fn track(message_id: &str, user: Option<&str>, anon: Option<&str>) -> String {
    let mut call = serde_json::json!({
        "type": "track",
        "event": "Product Viewed",
        "messageId": message_id,
        "timestamp": "2026-03-01T10:00:00.000Z",
        "properties": {"sku": "A-1"}
    });
    if let Some(u) = user {
        call["userId"] = u.into();
    }
    if let Some(a) = anon {
        call["anonymousId"] = a.into();
    }
    call.to_string()
}

/// An identify call joining a user id, a device and (optionally) an email.
pub fn identify(message_id: &str, user: &str, anon: Option<&str>, email: Option<&str>) -> String {
    let mut call = serde_json::json!({
        "type": "identify",
        "userId": user,
        "messageId": message_id,
        "timestamp": "2026-03-01T10:00:00.000Z",
        "traits": {}
    });
    if let Some(a) = anon {
        call["anonymousId"] = a.into();
    }
    if let Some(e) = email {
        call["traits"]["email"] = e.into();
    }
    call.to_string()
}
