//! The schema migrates on a fresh cluster, and the audit table is append-only for everyone.

use dps_station::central::service::{audit, migrations};

use crate::pg::PgCluster;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[test]
fn migrations_run_twice_and_the_service_role_cannot_change_audit_rows() {
    let pg = PgCluster::start();
    let rt = runtime();
    rt.block_on(async {
        let mut admin = connect(&pg.admin_url()).await;
        let version = migrations::run(&mut admin).await.unwrap();
        assert_eq!(version, migrations::latest_version());
        // A second run (another replica starting) changes nothing.
        assert_eq!(migrations::run(&mut admin).await.unwrap(), version);
    });
    let service_url = pg.service_login("central_svc");
    rt.block_on(async {
        let mut service = connect(&service_url).await;
        let tx = service.transaction().await.unwrap();
        for n in 0..3 {
            let details = format!("{{\"n\":{n}}}");
            let entry = audit::AuditEntry {
                station_id: "st-1",
                actor: "service",
                action: "test.row",
                subject: "st-1",
                details: &details,
            };
            assert_eq!(audit::append(&tx, &entry).await.unwrap(), n + 1);
        }
        tx.commit().await.unwrap();
    });

    // Neither the service's role nor the owner may change or delete a row.
    for user in ["central_svc", crate::pg::ADMIN] {
        for sql in [
            "UPDATE central_audit SET details = '{}' WHERE position = 2",
            "DELETE FROM central_audit WHERE position = 2",
        ] {
            let out = pg.try_psql(user, "central", sql);
            assert!(!out.status.success(), "{user} could run `{sql}`");
        }
    }
    let out = pg.try_psql("central_svc", "central", "TRUNCATE central_audit");
    assert!(
        !out.status.success(),
        "the service role could truncate the audit table"
    );
    assert_eq!(
        pg.psql("central", "SELECT count(*) FROM central_audit"),
        "3"
    );
}
