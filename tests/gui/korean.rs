//! The Korean desk renders Hangul (Noto Sans CJK), checked on a CPU-rendered snapshot (wgpu on
//! Mesa's lavapipe).

use std::time::Duration;

use dps_station::gui::i18n::Language;
use dps_station::station::demo_desk::DemoDeskOptions;

use super::common::desk;

#[test]
fn the_korean_desk_renders_hangul() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 4,
            slots: 4,
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
        Some(Language::Ko),
    );
    assert!(d.harness.state().has_cjk_font(), "install fonts-noto-cjk");
    d.sign_in("민수");
    assert!(d.shows("배치 시작 (F2)"));
    // Before a batch, nothing on screen depends on time or on which slot got which device.
    d.harness.snapshot("desk_korean");
    d.click("배치 시작 (F2)");
    d.click("demo-x509-csr");
    d.click("이 배치 시작");
    d.wait_until("4 passes", Duration::from_secs(60), |a| {
        a.view().passed == 4 && !a.view().running
    });
    assert_eq!(d.count(" 합격"), 4);
}
