//! The engineer's Central ledger panel (issue 18 point 6) over the demo station's real ledger: a
//! held lease (one expired) and a conflict the service reported are shown, the conflict with ▲ and
//! its words; a station not joined says so and how to join.

use std::time::Duration;

use dps_station::ledger::leases::NewLease;
use dps_station::ledger::{Ledger, WriterIdentity};

use crate::common::engineer_desk;

#[test]
fn the_central_panel_shows_leases_conflicts_and_that_the_station_is_not_joined() {
    let mut d = engineer_desk();
    {
        let path = d._workspace.station.ledger.clone();
        let mut l = Ledger::open(
            &path,
            &WriterIdentity {
                station: "line-1".into(),
                operator: "kim".into(),
            },
        )
        .unwrap();
        l.transaction(|w| {
            w.record_lease(&NewLease {
                lease_id: "L-live-0001".into(),
                batch: "night".into(),
                count: 40,
                expires_at: "2999-01-01T00:00:00Z".into(),
                signed: "{}".into(),
            })?;
            w.record_lease(&NewLease {
                lease_id: "L-old-0002".into(),
                batch: "night".into(),
                count: 10,
                expires_at: "2026-01-01T00:00:00Z".into(),
                signed: "{}".into(),
            })
        })
        .unwrap();
        l.append_audit(
            "line-1",
            "central.quarantined",
            "demo-x509-csr-sim00000001",
            &serde_json::json!({
                "device_model": "sim-sensor",
                "device_serial": "SIM00000001",
                "held_by": "line-2",
                "reason": "serial SIM00000001 is already provisioned on station line-2",
            }),
        )
        .unwrap();
    }
    d.click("Central ledger");
    d.wait_shows("Leases held", Duration::from_secs(30));
    assert!(d.shows("L-live-0001"), "the live lease is listed");
    assert!(d.shows("▲ expired"), "the expired lease is marked");
    assert!(
        d.shows("▲ 1 identity(ies) quarantined"),
        "the conflict count is marked"
    );
    assert!(
        d.shows("held by line-2: serial SIM00000001 is already provisioned on station line-2"),
        "the conflict names the other station and why"
    );
    assert!(d.shows("Not joined to a central ledger"));
    assert!(d.shows("dps-station central join"));
}

#[test]
fn a_screen_shorter_than_the_window_is_painted_to_its_bottom() {
    let mut d = engineer_desk();
    d.click("Central ledger");
    d.wait_shows("Leases held", Duration::from_secs(30));
    // CPU-rendered (wgpu on lavapipe): below the panel's last line, the desk's grey base, not the
    // unpainted black of the window.
    let image = d.harness.render().expect("render the desk (Mesa lavapipe)");
    let (width, height) = (image.width(), image.height());
    for (x, y) in [
        (20, height - 12),
        (width / 2, height - 12),
        (width - 20, height - 40),
    ] {
        let [r, g, b, _] = image.get_pixel(x, y).0;
        let base = dps_station::gui::theme::Palette::DARK.base;
        assert_eq!(
            [r, g, b],
            [base.r(), base.g(), base.b()],
            "pixel ({x}, {y}) of {width}×{height}"
        );
    }
}
